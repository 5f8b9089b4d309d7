"""Azurite, Microsoft's Azure Storage emulator, serving Blob Storage on loopback.

Azurite comes from the npm registry; ``make test`` installs it into ``.node/``
of the repository (``npm install --prefix .node azurite@3``), and
:func:`find_azurite_blob` looks there first, then on ``PATH``.

:class:`AzuriteBlobServer` keeps everything in memory and speaks for the
emulator's well-known development account. :class:`BlobClient` is a small
SharedKey-signed client over the standard library: the tests' raw access to
what a backend stored (create a container, put, get, list and delete blobs),
bypassing the client library under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from testrig.processes import (
    HTTP,
    LOOPBACK,
    Process,
    ServerStartError,
    WorkdirServer,
    free_port,
    wait_http,
)

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "AzuriteBlobServer",
    "BlobClient",
    "BlobError",
    "find_azurite_blob",
]

AZURITE_ACCOUNT = "devstoreaccount1"
"""The emulator's development account (documented, the same for every Azurite)."""
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
"""The development account's key (public: it only ever opens the local emulator)."""
_API_VERSION = "2021-08-06"
_REPO_ROOT = Path(__file__).resolve().parents[1]


def find_azurite_blob() -> str:
    """Return the path of the ``azurite-blob`` executable.

    Raises:
        FileNotFoundError: If it is neither in ``.node/`` of the repository nor on PATH.
    """
    local = _REPO_ROOT / ".node" / "node_modules" / ".bin" / "azurite-blob"
    if local.is_file():
        return str(local)
    found = shutil.which("azurite-blob")
    if found:
        return found
    raise FileNotFoundError(
        "azurite-blob not found: run `make test` (or `npm install --prefix .node azurite@3`)"
    )


class BlobError(Exception):
    """An Azure Blob request answered with an error status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status


@dataclass(frozen=True)
class BlobClient:
    """SharedKey-signed Blob Storage requests for one account (stdlib only, blocking)."""

    endpoint: str
    """``http://127.0.0.1:P/devstoreaccount1``: the account's URL."""
    account: str = AZURITE_ACCOUNT
    key: str = AZURITE_KEY

    def create_container(self, container: str) -> None:
        """Create a container (``PUT ?restype=container``)."""
        self._request("PUT", container, query={"restype": "container"})

    def put(self, container: str, name: str, data: bytes) -> None:
        """Write a block blob in one request."""
        headers = {"x-ms-blob-type": "BlockBlob"}
        self._request("PUT", f"{container}/{name}", body=data, headers=headers)

    def get(self, container: str, name: str) -> bytes:
        """Read a blob."""
        return self._request("GET", f"{container}/{name}")[0]

    def last_modified(self, container: str, name: str) -> datetime:
        """The blob's ``Last-Modified`` (what lifecycle rules count age from)."""
        return parsedate_to_datetime(self._request("HEAD", f"{container}/{name}")[1])

    def delete(self, container: str, name: str) -> None:
        """Delete a blob."""
        self._request("DELETE", f"{container}/{name}")

    def list(self, container: str, prefix: str = "") -> list[str]:
        """Names of the blobs in ``container`` starting with ``prefix``."""
        names: list[str] = []
        marker = ""
        while True:
            query = {"restype": "container", "comp": "list", "prefix": prefix}
            if marker:
                query["marker"] = marker
            body = self._request("GET", container, query=query)[0]
            root = ET.fromstring(body)
            names += [node.text or "" for node in root.iter("Name")]
            marker = root.findtext("NextMarker") or ""
            if not marker:
                return names

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[bytes, str]:
        """Send one signed request; return the body and ``Last-Modified``."""
        query = query or {}
        headers = {
            "x-ms-date": formatdate(usegmt=True),
            "x-ms-version": _API_VERSION,
            **(headers or {}),
        }
        if method == "PUT":  # urllib would add a form Content-Type, unsigned
            headers["Content-Type"] = "application/octet-stream"
        quoted = urllib.parse.quote(path)
        headers["Authorization"] = self._authorization(method, quoted, query, headers, len(body))
        url = f"{self.endpoint}/{quoted}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(
            url, data=body if method == "PUT" else None, method=method, headers=headers
        )
        try:
            with HTTP.open(request, timeout=30) as response:
                return response.read(), response.headers.get("Last-Modified", "")
        except urllib.error.HTTPError as exc:
            raise BlobError(exc.code, exc.read().decode("utf-8", "replace")) from exc

    def _authorization(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], length: int
    ) -> str:
        ms_headers = "".join(
            f"{name.lower()}:{value}\n"
            for name, value in sorted(headers.items(), key=lambda item: item[0].lower())
            if name.lower().startswith("x-ms-")
        )
        account_path = urllib.parse.urlsplit(self.endpoint).path
        resource = f"/{self.account}{account_path}/{path}" + "".join(
            f"\n{name.lower()}:{value}" for name, value in sorted(query.items())
        )
        standard = [
            method,
            "",  # Content-Encoding
            "",  # Content-Language
            str(length) if length else "",
            "",  # Content-MD5
            headers.get("Content-Type", ""),
            "",  # Date (x-ms-date is signed instead)
            "",  # If-Modified-Since
            "",  # If-Match
            "",  # If-None-Match
            "",  # If-Unmodified-Since
            "",  # Range
        ]
        to_sign = "\n".join(standard) + "\n" + ms_headers + resource
        digest = hmac.new(base64.b64decode(self.key), to_sign.encode(), hashlib.sha256).digest()
        return f"SharedKey {self.account}:{base64.b64encode(digest).decode()}"


class AzuriteBlobServer(WorkdirServer):
    """``azurite-blob`` on a free loopback port, in memory, telemetry off.

    Attributes:
        account: The account clients sign for (Azurite's development account).
        key: That account's key.
    """

    def __init__(self, *, startup_timeout: float = 90.0) -> None:
        """Configure (but do not start) the server.

        Args:
            startup_timeout: Seconds to wait for Azurite to answer (Node.js
                starts slowly on a busy machine).
        """
        super().__init__()
        self.account = AZURITE_ACCOUNT
        self.key = AZURITE_KEY
        self.startup_timeout = startup_timeout

    @property
    def endpoint(self) -> str:
        """The account's URL, ``http://127.0.0.1:P/devstoreaccount1`` (once started)."""
        if self._port is None:
            raise RuntimeError("AzuriteBlobServer is not started")
        return f"http://{LOOPBACK}:{self._port}/{self.account}"

    @property
    def pid(self) -> int | None:
        """Process id of Azurite, or ``None`` when not running."""
        return self._proc.pid if self._proc else None

    def client(self) -> BlobClient:
        """A raw, signed client for the development account."""
        return BlobClient(self.endpoint, self.account, self.key)

    def start(self) -> None:
        """Launch Azurite and block until it answers HTTP. Idempotent.

        Raises:
            ServerStartError: If Azurite exits or does not answer in time.
            FileNotFoundError: If ``azurite-blob`` is not installed.
        """
        if self._proc is not None:
            return
        executable = find_azurite_blob()
        self._workdir = Path(tempfile.mkdtemp(prefix="casstore-azurite-"))
        started = time.monotonic()
        try:
            for attempt in range(3):
                port = free_port()
                argv = [
                    executable,
                    *("--blobHost", LOOPBACK, "--blobPort", str(port)),
                    "--inMemoryPersistence",
                    "--skipApiVersionCheck",
                    "--loose",
                    "--disableTelemetry",
                ]
                proc = Process(argv, self._workdir / "azurite.log")
                remaining = started + self.startup_timeout - time.monotonic()
                try:
                    wait_http(f"http://{LOOPBACK}:{port}/{self.account}?comp=list", remaining, proc)
                except ServerStartError as exc:
                    proc.stop()
                    if attempt < 2 and "EADDRINUSE" in str(exc):
                        continue
                    raise
                self._proc, self._port = proc, port
                return
        except BaseException:
            self._remove_workdir()
            raise
