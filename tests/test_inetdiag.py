"""The kernel's sock_diag answers what /proc/net/tcp says about connections to one port, a tenth as dearly."""

from __future__ import annotations

import socket

import pytest

from redisprobe.producers.processes.inetdiag import open_connections
from redisprobe.producers.processes.sockettable import _proc_net_inet


def test_open_connections_to_the_server_are_the_kernel_tables(shared_sandbox):
    url = shared_sandbox.urls[0]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        found = open_connections(port)
        if found is None:
            pytest.skip("no sock_diag here")
        assert sorted(found) == sorted(_proc_net_inet(port))
        assert {sock.getsockname()[:2] for sock in socks} <= {local for _inode, local, _remote in found}
        assert all(remote[1] == port for _inode, _local, remote in found)
    finally:
        for sock in socks:
            sock.close()


def test_a_closed_connection_is_no_longer_there(shared_sandbox):
    url = shared_sandbox.urls[0]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    sock = socket.create_connection(("127.0.0.1", port))
    local = sock.getsockname()[:2]
    before = open_connections(port)
    if before is None:
        pytest.skip("no sock_diag here")
    assert local in {entry[1] for entry in before}
    sock.close()
    assert local not in {entry[1] for entry in open_connections(port) or []}


def test_another_port_is_left_out(shared_sandbox):
    url = shared_sandbox.urls[0]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        found = open_connections(port + 1 if port < 65535 else port - 1)
        if found is None:
            pytest.skip("no sock_diag here")
        assert sock.getsockname()[:2] not in {entry[1] for entry in found}
    finally:
        sock.close()


def test_one_dump_for_several_ports_is_the_kernel_tables_for_each(shared_sandbox):
    """A cluster's nodes share one read: the kernel's filter keeps the connections to any of the ports, no other."""
    url = shared_sandbox.urls[0]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    ports = [port] + [listener.getsockname()[1] for listener in listeners]
    socks = [socket.create_connection(("127.0.0.1", p)) for p in ports for _ in range(2)]
    try:
        for asked in (ports, ports[1:3], [ports[0], ports[3]], [*range(1, 30), ports[2]]):
            found = open_connections(*asked)
            if found is None:
                pytest.skip("no sock_diag here")
            assert sorted(found) == sorted(_proc_net_inet(None, asked))
            assert {remote[1] for _inode, _local, remote in found} == set(asked) & set(ports)
    finally:
        for sock in socks + listeners:
            sock.close()


def test_no_port_asks_for_every_connection_the_text_table_lists(shared_sandbox):
    """The pid mapper's scan reads every connection: sock_diag gives what /proc/net/tcp lists, a third as dearly."""
    url = shared_sandbox.urls[0]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    try:
        found = open_connections()
        if found is None:
            pytest.skip("no sock_diag here")
        assert {sock.getsockname()[:2] for sock in socks} <= {local for _inode, local, _remote in found}
        assert sorted(c for c in found if c[2][1] == port) == sorted(_proc_net_inet(port))
        assert len({c[2][1] for c in found}) >= 1 and all(inode for inode, _local, _remote in found)
    finally:
        for sock in socks:
            sock.close()
