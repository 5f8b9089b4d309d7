"""Writing to a store the way gc sees writers: drivers following the manifest, their keys."""

from __future__ import annotations

from typing import Any

from temporalio.converter import (
    StorageDriverClaim,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore import CasStorageDriver
from casstore._format.claims import parse_claim_data
from casstore.backends import Backend

NS = "default"


def writer_for(backend: Backend, **options: Any) -> CasStorageDriver:
    """A driver as a worker configured through the plugin has it: following the manifest."""
    return CasStorageDriver(backend, lifecycle_manifest=True, **options)


def context(workflow_id: str, namespace: str = NS) -> StorageDriverStoreContext:
    return StorageDriverStoreContext(
        target=StorageDriverWorkflowInfo(namespace=namespace, id=workflow_id)
    )


def key_of(claim: StorageDriverClaim) -> str:
    return parse_claim_data(claim.claim_data, max_size=1 << 30).key
