"""Raw HTTP/1.1 over a loopback socket, for the tests that check bytes on the wire."""

from __future__ import annotations

import socket

STILL_OPEN = b"<still open>"
RESET = b"<reset>"


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def read_until_closed(sock: socket.socket, limit: float = 5) -> bytes:
    """Everything the server sends until it closes the connection; `STILL_OPEN` appended if
    it had not after `limit` seconds, `RESET` if it reset the connection."""
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data + STILL_OPEN
    except ConnectionResetError:
        return data + RESET
    return data


def exchange(url: str, raw: bytes, limit: float = 5) -> bytes:
    """Send `raw` on a new connection; what comes back until it closes (see above)."""
    sock = connect(url)
    sock.sendall(raw)
    return read_until_closed(sock, limit)
