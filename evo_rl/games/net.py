"""Small TCP helpers shared by the game clients, the virtual games and their input/screen backends."""

from __future__ import annotations

import os
import socket

from evo_rl.games.errors import GameConnectionError, GameError

LOOPBACK = "127.0.0.1"


def connect(host: str, port: int, timeout: float, what: str, hint: str) -> socket.socket:
    """A connected TCP socket (``TCP_NODELAY``, blocking with ``timeout``) or :class:`GameConnectionError`."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise GameConnectionError(f"cannot connect to {what} on {host}:{port} ({e}); {hint}") from e
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """Exactly ``n`` bytes, or None when the peer closed the connection first (``socket.timeout`` propagates)."""
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def listen(host: str, port: int, what: str) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port); :class:`GameError` when the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if os.name != "nt":  # rebinding right after a restart; on Windows this flag would let two servers share a port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise GameError(f"{what}: cannot listen on {host}:{port} ({e}); is another program using the port?") from e
    sock.listen(4)
    return sock
