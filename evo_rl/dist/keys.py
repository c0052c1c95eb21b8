"""CurveZMQ keys: encryption and an allow-list for distributed training beyond loopback.

``evo-rl keys generate DIR`` writes a key pair per role (``server``, ``trainer``, ``worker``:
``NAME.key`` public, ``NAME.key_secret`` secret) and ``DIR/allowed/`` with the public keys the
server accepts. Copy the folder to every machine and set ``dist.keys_dir`` to it; a client whose
public key is not in ``allowed/`` is refused during the handshake, before any message is read.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from evo_rl.dist.common import DistError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def generate(folder: Path, names: Iterable[str], overwrite: bool = False) -> list[Path]:
    """A key pair per name in ``folder``; existing keys are kept unless ``overwrite``."""
    import zmq.auth

    folder.mkdir(parents=True, exist_ok=True)
    names = list(names)
    existing = [folder / f"{n}{s}" for n in names for s in (".key", ".key_secret") if (folder / f"{n}{s}").exists()]
    if existing and not overwrite:
        raise DistError(f"{existing[0]} exists: keys in use would stop working; pass --overwrite to replace them")
    written = []
    for name in names:
        public, secret = zmq.auth.create_certificates(str(folder), name)
        Path(secret).chmod(0o600)
        written += [Path(public), Path(secret)]
    return written


def _load(path: Path) -> tuple[bytes, bytes | None]:
    import zmq.auth

    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as e:
        raise DistError(f"{path} is not a CurveZMQ key file ({e}); `evo-rl keys generate DIR` writes them") from None
    return public, secret


def load_keypair(path: Path) -> tuple[bytes, bytes]:
    public, secret = _load(path)
    if secret is None:
        raise DistError(f"{path} holds no secret key: point at NAME.key_secret")
    return public, secret


def load_public(path: Path) -> bytes:
    return _load(path)[0]


def secure_server(sock: Any, pair: tuple[bytes, bytes]) -> None:
    sock.curve_publickey, sock.curve_secretkey = pair
    sock.curve_server = True


def secure_client(sock: Any, pair: tuple[bytes, bytes], server_public: bytes) -> None:
    sock.curve_publickey, sock.curve_secretkey = pair
    sock.curve_serverkey = server_public


class _Forward(logging.Handler):
    """Passes the authenticator's refusals to the server's log."""

    def __init__(self, log: Callable[[str], None]) -> None:
        super().__init__(logging.DEBUG)
        self.out = log

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.WARNING or text.startswith("DENIED"):
            self.out(f"refused a client at the handshake: {text}")


class Authenticator:
    """ZAP handler for a context: CURVE clients whose public key is in ``allow_dir`` pass."""

    def __init__(self, ctx: Any, allow_dir: Path, log: Callable[[str], None]) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        logger = logging.getLogger(f"evo_rl.dist.auth.{id(self)}")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(_Forward(log))
        self._auth = ThreadAuthenticator(ctx, log=logger)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(allow_dir))

    def stop(self) -> None:
        self._auth.stop()
