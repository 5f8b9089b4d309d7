"""obstore's errors mapped to casstore's hierarchy: the one place they are translated.

obstore raises one exception type per ``object_store`` error kind; the HTTP
status and the service's error code are only in the message (with a long
debug dump after it). :func:`translate` turns each into a
:class:`~casstore.errors.BackendError` subclass whose message names the
operation, the service's answer, the store (bucket or container, endpoint)
and the object's full key, raised ``from`` the obstore error.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    NotFoundError,
    NotSupportedError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)

from casstore.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    CasstoreError,
    ConfigurationError,
    ObjectNotFoundError,
)

OBSTORE_ERRORS = (BaseError, FileNotFoundError, NotImplementedError, TimeoutError, ConnectionError)
"""What obstore raises: its own types, and builtins for some kinds (missing objects
are ``FileNotFoundError``)."""
NOT_FOUND = (NotFoundError, FileNotFoundError)

_STATUS_RE = re.compile(r"status code: (\d{3})")
_CODE_RE = re.compile(r"<Code>([^<]{1,80})</Code>")
_MESSAGE_RE = re.compile(r"<Message>([^<\r\n]{1,200})")
_MISSING_CONTAINER_CODES = {"NoSuchBucket", "ContainerNotFound"}
# Where object_store looks for credentials when none were configured.
_CREDENTIAL_SOURCES = ("/latest/api/token", "/latest/meta-data", "token request", "credential")
_UNAVAILABLE_CODES = {"SlowDown", "ServiceUnavailable", "ServerBusy", "RequestTimeout"}

PERMISSIONS = {
    "s3": {
        "stat": "s3:GetObject (and s3:ListBucket, without which S3 answers 403 for missing "
        "objects)",
        "put": "s3:PutObject",
        "get": "s3:GetObject",
        "touch": "s3:GetObject and s3:PutObject (the refresh copies the object onto itself)",
        "delete": "s3:DeleteObject",
        "scan": "s3:ListBucket",
        "move": "s3:GetObject, s3:PutObject and s3:DeleteObject",
    },
    "azure": {
        "stat": "read (Storage Blob Data Reader, or an r SAS permission)",
        "put": "create and write (Storage Blob Data Contributor, or cw SAS permissions)",
        "get": "read (Storage Blob Data Reader, or an r SAS permission)",
        "touch": "read and write (the refresh copies the blob onto itself)",
        "delete": "delete (Storage Blob Data Contributor, or a d SAS permission)",
        "scan": "list (Storage Blob Data Reader, or an l SAS permission)",
        "move": "read, write and delete (Storage Blob Data Contributor, or rwd SAS permissions)",
    },
}
CREDENTIAL_CHAINS = {
    "s3": "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), a web identity "
    "token (AWS_WEB_IDENTITY_TOKEN_FILE), container credentials, the instance metadata "
    "endpoint, or profile=",
    "azure": "AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN, a service principal "
    "(AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID), workload identity, the Azure "
    "CLI (AZURE_USE_AZURE_CLI), or managed identity",
}


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an obstore error reports, if it reports one."""
    match = _STATUS_RE.search(str(exc))
    return int(match[1]) if match else None


def missing_container(exc: BaseException) -> bool:
    """Whether a not-found answer is about the bucket or container, not the object."""
    return any(code in str(exc) for code in _MISSING_CONTAINER_CODES)


def summary(exc: BaseException) -> str:
    """A short account of the service's answer: status, error code and message."""
    text = str(exc).split("\n\nDebug source:", 1)[0]
    status, code, message = status_of(exc), _CODE_RE.search(text), _MESSAGE_RE.search(text)
    if status is None:
        # No HTTP answer (connection refused, timeout, ...): obstore's first line says why.
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return first[:300]
    reason = f"{code[1]} (HTTP {status})" if code else f"HTTP {status}"
    return f"{reason}: {message[1].strip()}" if message else reason


def error(
    cls: type[CasstoreError], message: str, key: str, facts: Mapping[str, str]
) -> CasstoreError:
    """Build a casstore error carrying the key and the backend's description.

    ``key`` is the full name in the bucket or container; the error's ``key``
    attribute is casstore's key, without the configured prefix.
    """
    described = ", ".join(f"{name}={value}" for name, value in facts.items())
    root = facts.get("prefix", "") + "/" if facts.get("prefix") else ""
    own = key[len(root) :] if root and key.startswith(root) else key
    return cls(message, key=own or None, backend=f"ObjectStoreBackend({described})")


@contextlib.contextmanager
def translate(service: str, operation: str, key: str, facts: Mapping[str, str]) -> Iterator[None]:
    """Map obstore errors raised in the body to casstore's hierarchy.

    Args:
        service: ``"s3"`` or ``"azure"`` (picks the words for permissions and credentials).
        operation: The backend call (``stat``, ``put``, ...).
        key: The object's full key in the bucket or container (prefix included).
        facts: The backend's description, for the message's brackets.
    """
    try:
        yield
    except CasstoreError:
        raise
    except OBSTORE_ERRORS as exc:
        raise_translated(service, operation, key, facts, exc)


def raise_translated(
    service: str, operation: str, key: str, facts: Mapping[str, str], exc: Exception
) -> NoReturn:
    """Raise the casstore error for ``exc`` (see :func:`translate`)."""
    at = where(facts, key)
    word = "S3" if service == "s3" else "Azure Blob Storage"
    container = "bucket" if service == "s3" else "container"
    reason = summary(exc)
    code_match = _CODE_RE.search(str(exc))
    code = code_match[1] if code_match else ""
    status = status_of(exc)
    if code in _MISSING_CONTAINER_CODES:
        raise error(
            BackendUnavailableError,
            f"{word} {container} {facts.get(container, '?')!r} does not exist at this "
            f"endpoint: {reason}{at}",
            key,
            facts,
        ) from exc
    if isinstance(exc, NOT_FOUND):
        raise error(
            ObjectNotFoundError, f"object not found in {word}: {reason}{at}", key, facts
        ) from exc
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError):
        raise error(
            BackendPermissionError,
            f"{word} refused {operation}: {reason}; check the credentials and that they allow "
            f"{PERMISSIONS[service].get(operation, 'read')}{at}",
            key,
            facts,
        ) from exc
    text = str(exc).split("\n\nDebug source:", 1)[0]
    if status is None and any(source in text for source in _CREDENTIAL_SOURCES):
        raise error(
            BackendPermissionError,
            f"no usable credentials for {word} {operation}: none were configured, and looking "
            f"them up failed ({reason}); they come from {CREDENTIAL_CHAINS[service]}{at}",
            key,
            facts,
        ) from exc
    if isinstance(exc, AlreadyExistsError | PreconditionError):
        raise error(
            BackendError, f"{word} {operation} conflicted: {reason}{at}", key, facts
        ) from exc
    if isinstance(exc, NotSupportedError | NotImplementedError) or status == 501:
        raise error(
            BackendError,
            f"{word} does not support {operation}: {reason}; if it lacks conditional writes, "
            f"set conditional_writes=false{at}",
            key,
            facts,
        ) from exc
    if status is None or status >= 500 or status == 429 or code in _UNAVAILABLE_CODES:
        raise error(
            BackendUnavailableError,
            f"{word} {operation} failed, the service is unreachable, unavailable or "
            f"throttling: {reason}{at}",
            key,
            facts,
        ) from exc
    raise error(BackendError, f"{word} {operation} failed: {reason}{at}", key, facts) from exc


def where(facts: Mapping[str, str], key: str) -> str:
    """``[bucket=b, key=k, region=r, endpoint=e]``: the store, then the full key."""
    items = []
    for name, value in facts.items():
        if name in ("backend", "service", "prefix"):
            continue  # the prefix is part of the key shown
        items.append(f"{name}={value}")
        if name in ("bucket", "container") and key:
            items.append(f"key={key}")
    return f" [{', '.join(items)}]"


def describe_store(
    service: str, container: str, prefix: str, config: Mapping[str, Any]
) -> dict[str, str]:
    """The backend's facts for messages: service, container, prefix, region or account, endpoint."""
    if service == "s3":
        facts = {"backend": "objectstore-s3", "bucket": container}
        if prefix:
            facts["prefix"] = prefix
        facts["region"] = str(config.get("region") or "us-east-1")
        facts["endpoint"] = str(config.get("endpoint") or "aws")
        return facts
    facts = {"backend": "objectstore-azure", "container": container}
    if prefix:
        facts["prefix"] = prefix
    account = str(config.get("account_name") or "")
    if config.get("use_emulator"):
        account = account or "devstoreaccount1"
    facts["account"] = account or "unset"
    facts["endpoint"] = str(config.get("endpoint") or f"https://{account}.blob.core.windows.net")
    return facts


@contextlib.contextmanager
def settings_errors(what: str) -> Iterator[None]:
    """Map what obstore says of bad settings (unknown keys, malformed endpoints)."""
    try:
        yield
    except BaseError as exc:
        detail = str(exc).split("\n\nDebug source:", 1)[0]
        raise ConfigurationError(f"invalid object-store settings for {what}: {detail}") from exc
