"""Debian's ``redis-server`` on a free loopback port, with a temporary directory.

``make test`` installs the package when it is missing (``apt-get install
redis-server``); :func:`find_redis_server` looks on ``PATH`` and in
``/usr/bin``. The server keeps no snapshot or append-only file (nothing
survives it), binds to loopback only and starts with ``maxmemory-policy
noeviction``; a test changes settings with ``CONFIG SET`` on :attr:`url`.
With ``tls=True`` it speaks TLS only, with a self-signed certificate for
127.0.0.1 made on start (:attr:`ca_file` verifies it).
"""

from __future__ import annotations

import datetime
import shutil
import socket
import ssl
import tempfile
import time
from pathlib import Path

from testrig.processes import (
    LOOPBACK,
    Process,
    ServerStartError,
    WorkdirServer,
    free_port,
    tail,
)

__all__ = ["RedisServer", "find_redis_server"]


def find_redis_server() -> str:
    """Return the path of ``redis-server``.

    Raises:
        FileNotFoundError: If it is not installed (``apt-get install redis-server``).
    """
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
    )
    if found is None:
        raise FileNotFoundError(
            "redis-server not found: run `make test` (or `apt-get install redis-server`)"
        )
    return found


def _pings(port: int, ca_file: Path | None) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1) as raw:
            sock: socket.socket = raw
            if ca_file is not None:
                sock = ssl.create_default_context(cafile=str(ca_file)).wrap_socket(
                    raw, server_hostname=LOOPBACK
                )
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, valid for a day (needs ``cryptography``)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class RedisServer(WorkdirServer):
    """``redis-server`` on a free loopback port; its directory is removed when it stops."""

    def __init__(self, *, tls: bool = False, startup_timeout: float = 30.0) -> None:
        super().__init__()
        self.tls = tls
        self.startup_timeout = startup_timeout
        self.ca_file: Path | None = None
        """With ``tls``: the certificate to verify the server with (once started)."""

    @property
    def port(self) -> int:
        """The port it listens on (once started)."""
        if self._port is None:
            raise RuntimeError("RedisServer is not started")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``, for a proxy in front of it."""
        return LOOPBACK, self.port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:P/0`` (``rediss://...?ssl_ca_certs=...`` with ``tls``)."""
        if self.tls:
            return f"rediss://{LOOPBACK}:{self.port}/0?ssl_ca_certs={self.ca_file}"
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        """Launch the server and wait until it answers ``PING``. Idempotent.

        Raises:
            ServerStartError: If it exits or does not answer in time.
            FileNotFoundError: If ``redis-server`` is not installed.
        """
        if self._proc is not None:
            return
        executable = find_redis_server()
        self._workdir = Path(tempfile.mkdtemp(prefix="casstore-redis-"))
        try:
            tls: list[str] = []
            if self.tls:
                cert, key = _self_signed(self._workdir)
                self.ca_file = cert
                tls = ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
                tls += ["--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
            for attempt in range(3):
                port = free_port()
                ports = (
                    ("--port", "0", "--tls-port", str(port)) if self.tls else ("--port", str(port))
                )
                argv = [
                    executable,
                    *ports,
                    *tls,
                    *("--bind", LOOPBACK),
                    *("--dir", str(self._workdir), "--save", "", "--appendonly", "no"),
                    *("--maxmemory-policy", "noeviction", "--daemonize", "no"),
                ]
                proc = Process(argv, self._workdir / "redis.log")
                if self._wait(proc, port):
                    self._proc, self._port = proc, port
                    return
                proc.stop()
                log = tail(proc.log_path)
                if attempt < 2 and "Address already in use" in log:
                    continue
                raise ServerStartError(f"redis-server did not start on port {port}:\n{log}")
        except BaseException:
            self._remove_workdir()
            raise

    def _wait(self, proc: Process, port: int) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline and not proc.exited():
            if _pings(port, self.ca_file):
                return True
            time.sleep(0.05)
        return False
