"""Wire capture: Redis requests *and replies* read off the network, at a fraction of MONITOR's cost.

MONITOR shows no replies, never shows a command the server refused, and costs a loaded server two thirds of its
throughput. The TCP traffic of the server's port shows all three for the price of a packet copy. The data's order:

| module | its one job |
|---|---|
| `bpf` | the kernel filter: TCP to or from one port, IPv4 and IPv6, loopback packets once |
| `spool` | the spool format (segments of raw packets with kernel timestamps, status records), read whole or followed |
| `reader` | the capture process (`python -m redisprobe.producers.wire.reader`): AF_PACKET to spool, in budget |
| `sniffer` | `WireCapture`: starts and stops the reader from a parent, one clear line when privilege is missing |
| `packets` | IPv4/IPv6 + TCP headers of a spooled packet |
| `tcp` | reassembly per connection and direction: retransmissions, reordering, holes |
| `resp` | a pure-Python RESP2/RESP3 parser (inline commands; hiredis reads the rest, see `conversation`) |
| `conversation` | one connection's requests paired with their replies: pipelining, MULTI/EXEC, SELECT, pub/sub |
| `offline` | spool records to `Exchange` records and gaps, incrementally (`Reassembler.take`) or whole |
| `events` | `Exchange` records to trace events: `trace.Monitor` for the command, `trace.WireReply` for the answer |
| `source` | `monitor --source wire|both`: the readers, their spools parsed into the trace as they are written |

The reader process only copies packets; `source.WireSource` parses the spool in the capturing process as it is
written (a nice-10 thread: a loaded server comes first) and deletes each segment read.
"""
