"""Wire capture: Redis requests *and replies* read off the network, at a fraction of MONITOR's cost.

MONITOR shows no replies, never shows a command the server refused, and costs a loaded server two thirds of its
throughput. The TCP traffic of the server's port shows all three for the price of a packet copy. The data's order:

| module | its one job |
|---|---|
| `bpf` | the kernel filter: TCP to or from one port, IPv4 and IPv6, loopback packets once |
| `spool` | the spool file format: raw packets with their kernel timestamps, and the reader's status records |
| `reader` | the capture process (`python -m redisprobe.wire.reader`): AF_PACKET socket to spool, nothing else |
| `capture` | `WireCapture`: starts and stops the reader from a parent, one clear line when privilege is missing |
| `packets` | IPv4/IPv6 + TCP headers of a spooled packet |
| `tcp` | reassembly per connection and direction: retransmissions, reordering, holes |
| `resp` | an incremental RESP2/RESP3 parser |
| `conversation` | one connection's requests paired with their replies: pipelining, MULTI/EXEC, SELECT, pub/sub |
| `offline` | a spool to `Exchange` records and gaps |
| `events` | `Exchange` records to trace events: `trace.Monitor` for the command, `trace.WireReply` for the answer |

Capture happens live and costs only copies; parsing waits until the spool is read, like the MONITOR spool.
"""
