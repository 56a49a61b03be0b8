import socket

import pytest


def test_outside_connections_are_blocked():
    with socket.socket() as s, pytest.raises(OSError, match="network access blocked"):
        s.connect(("93.184.216.34", 80))


def test_loopback_connections_are_allowed():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.socket() as client:
            client.connect(server.getsockname())
