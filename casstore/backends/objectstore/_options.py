"""Options of the object-store backend: defaults, checks, URLs, building obstore stores."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from obstore.store import AzureStore, S3Store

from casstore.backends._prefix import check_prefix as check_prefix_of
from casstore.backends._s3url import ALL_NAMES, for_client
from casstore.backends._urlopts import (
    merge_options,
    option_choice,
    option_flag,
    option_float,
    option_int,
    option_text,
)
from casstore.errors import ConfigurationError

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

TouchMode = Literal["copy", "rewrite"]
"""How :meth:`~ObjectStoreBackend.touch` resets an object's age: a server-side
copy onto itself (no payload bytes move), or a read and rewrite of the same bytes."""

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds to establish a connection."""
DEFAULT_READ_TIMEOUT = 60.0
"""Seconds to wait for more data on a connection."""
DEFAULT_REQUEST_TIMEOUT = 300.0
"""Seconds one whole request may take (a 50 MiB upload on a slow link included)."""
DEFAULT_MAX_RETRIES = 4
"""Retries after the first attempt: five attempts, like the S3 backend's default."""
DEFAULT_RETRY_TIMEOUT = 180.0
"""Seconds after the first attempt past which no retry starts."""

S3_SCHEMES = ("s3",)
AZURE_SCHEMES = ("az", "azure", "abfs", "abfss", "adl")

# A self-copy that changes nothing is refused by S3 (400 InvalidRequest); one
# that replaces the metadata is the request that resets LastModified. obstore
# sends this header pair on copies without overwrite, and signs it.
S3_REFRESH_COPY = "header: x-amz-metadata-directive: REPLACE"

_S3_BUCKET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
_AZURE_CONTAINER_RE = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}|\$root")
_CLIENT_OPTIONS = {
    "allow_http",
    "connect_timeout",
    "read_timeout",
    "request_timeout",
    "max_retries",
    "retry_timeout",
}
_BACKEND_OPTIONS = {"conditional_writes", "touch"}
_S3_URL_OPTIONS = {
    "client",
    "endpoint",
    "region",
    "profile",
    "virtual_hosted_style",
    "metadata_endpoint",
}
_AZURE_URL_OPTIONS = {"account", "endpoint", "use_emulator", "msi_endpoint"}
# Secrets are keyword options only: URLs end up in logs and process listings.
_S3_SECRETS = {"access_key_id", "secret_access_key", "session_token"}
_AZURE_SECRETS = {"account_key", "sas_token"}


@dataclass(frozen=True)
class ClientSettings:
    """HTTP and retry settings, the same for every service."""

    allow_http: bool | None = None
    """Allow plain-HTTP endpoints; default: only when the endpoint is ``http://``."""
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_timeout: float = DEFAULT_RETRY_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "request_timeout", "retry_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigurationError(f"{name} must be greater than zero, got {value}")
        if self.max_retries < 0:
            raise ConfigurationError(f"max_retries must be 0 or more, got {self.max_retries}")

    def client_options(self, endpoint: str | None) -> ClientConfig:
        """Return obstore ``client_options``: timeouts, and plain HTTP only where asked for."""
        allow_http = self.allow_http
        if allow_http is None:
            allow_http = bool(endpoint and endpoint.lower().startswith("http://"))
        return {
            "allow_http": allow_http,
            "connect_timeout": timedelta(seconds=self.connect_timeout),
            "read_timeout": timedelta(seconds=self.read_timeout),
            "timeout": timedelta(seconds=self.request_timeout),
            "user_agent": "casstore",
        }

    def retry_config(self) -> RetryConfig:
        """Return obstore ``retry_config``: 5xx, connection errors and timeouts, with backoff."""
        return {
            "max_retries": self.max_retries,
            "retry_timeout": timedelta(seconds=self.retry_timeout),
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=15),
                "base": 2,
            },
        }


def s3_store(
    bucket: str,
    settings: ClientSettings,
    *,
    endpoint: str | None,
    region: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    session_token: str | None,
    profile: str | None,
    virtual_hosted_style: bool,
    metadata_endpoint: str | None,
    config: Mapping[str, Any] | None,
) -> S3Store:
    """Build an S3Store: explicit values over the environment (``AWS_*``)."""
    values: dict[str, Any] = {"virtual_hosted_style_request": virtual_hosted_style}
    for name, value in (
        ("endpoint", endpoint),
        ("region", region),
        ("access_key_id", access_key_id),
        ("secret_access_key", secret_access_key),
        ("session_token", session_token),
        ("metadata_endpoint", metadata_endpoint),
    ):
        if value is not None:
            values[name] = value
    values.update(config or {})
    provider = _aws_credentials(profile, values)
    return S3Store(
        bucket,
        config=values,  # type: ignore[arg-type]  # checked by obstore, which names bad keys
        client_options=settings.client_options(values.get("endpoint")),
        retry_config=settings.retry_config(),
        credential_provider=provider,
    )


def s3_aux_store(store: S3Store) -> S3Store:
    """The same store for refreshes and deletes.

    A copy without overwrite replaces the metadata (see ``S3_REFRESH_COPY``),
    and a delete is one ``DeleteObject``: obstore's default, a bulk
    ``DeleteObjects`` even for one key, fails on servers that store keys as
    files, where a key can name a directory.
    """
    return S3Store(
        config={**store.config, "copy_if_not_exists": S3_REFRESH_COPY, "disable_bulk_delete": True},
        prefix=store.prefix,
        client_options=store.client_options,
        retry_config=store.retry_config,
        credential_provider=store.credential_provider,
    )


def azure_store(
    container: str,
    settings: ClientSettings,
    *,
    account: str | None,
    account_key: str | None,
    sas_token: str | None,
    endpoint: str | None,
    use_emulator: bool,
    msi_endpoint: str | None,
    config: Mapping[str, Any] | None,
) -> AzureStore:
    """Build an AzureStore: explicit values over the environment (``AZURE_*``)."""
    values: dict[str, Any] = {}
    if use_emulator:
        values["use_emulator"] = True
    for name, value in (
        ("account_name", account),
        ("account_key", account_key),
        ("sas_key", sas_token),
        ("endpoint", endpoint),
        ("msi_endpoint", msi_endpoint),
    ):
        if value is not None:
            values[name] = value
    values.update(config or {})
    return AzureStore(
        container,
        config=values,  # type: ignore[arg-type]  # checked by obstore, which names bad keys
        client_options=settings.client_options(values.get("endpoint")),
        retry_config=settings.retry_config(),
    )


def _aws_credentials(profile: str | None, values: Mapping[str, Any]) -> Any:
    """A boto3 credential provider where obstore's own chain lacks the source, else None.

    obstore reads keys from the environment, web identity tokens, container
    credentials and instance metadata itself, but not the shared config and
    credentials files (profiles, SSO, ``credential_process``, role chains).
    Without explicit or environment keys, boto3's chain (minus the container
    and instance-metadata steps, which obstore does, honouring
    ``metadata_endpoint``) is asked; if it finds nothing, obstore's chain runs.
    """
    explicit = any(values.get(name) for name in ("access_key_id", "secret_access_key"))
    environment = os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY")
    if explicit or (environment and profile is None):
        return None
    try:
        import boto3  # type: ignore[import-untyped, unused-ignore]
        from botocore.exceptions import BotoCoreError, ProfileNotFound
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError as exc:
        if profile is None and not os.environ.get("AWS_PROFILE"):
            return None  # obstore's own chain: environment, web identity, container, EC2
        raise ConfigurationError(
            f"AWS profile {profile or os.environ.get('AWS_PROFILE')!r} is read from the shared "
            f"AWS config files through boto3: pip install casstore[s3] ({exc})"
        ) from exc
    try:
        session = boto3.Session(profile_name=profile)
        resolver = session._session.get_component("credential_provider")
        for name in ("container-role", "iam-role"):  # obstore's, with metadata_endpoint
            resolver.remove(name)
        found = session.get_credentials()
    except ProfileNotFound as exc:
        raise ConfigurationError(f"AWS profile {profile!r} not found: {exc}") from exc
    except BotoCoreError as exc:
        where = f"AWS profile {profile!r}" if profile else "the AWS config files"
        raise ConfigurationError(f"{where}: cannot load credentials: {exc}") from exc
    if found is None:
        if profile is not None:
            raise ConfigurationError(
                f"AWS profile {profile!r} has no credentials (no keys, SSO, "
                "credential_process or role in the shared config and credentials files)"
            )
        return None
    return Boto3CredentialProvider(session)


def check_bucket(bucket: object) -> str:
    """Check an S3 bucket name."""
    if not isinstance(bucket, str) or not _S3_BUCKET_RE.fullmatch(bucket):
        raise ConfigurationError(
            f"invalid S3 bucket name {bucket!r}: expected 3-255 letters, digits, '.', '-' or '_'"
        )
    return bucket


def check_container(container: object) -> str:
    """Check an Azure container name (3-63 lower-case letters, digits, single hyphens)."""
    if not isinstance(container, str) or not _AZURE_CONTAINER_RE.fullmatch(container):
        raise ConfigurationError(
            f"invalid Azure container name {container!r}: expected 3-63 lower-case letters, "
            "digits and single hyphens, starting and ending with a letter or digit"
        )
    return container


def check_prefix(prefix: object) -> str:
    """Return ``prefix`` without leading and trailing slashes, if it is valid."""
    return check_prefix_of(prefix)


@dataclass(frozen=True)
class ParsedUrl:
    """What a backend URL and its options say, ready for the backend's constructors."""

    service: Literal["s3", "azure"]
    container: str
    """Bucket or container."""
    prefix: str
    arguments: dict[str, Any]
    """Keyword arguments of ``ObjectStoreBackend.s3`` or ``.azure``."""


def parse_url(url: str, keywords: Mapping[str, object]) -> ParsedUrl:
    """Parse ``s3://bucket/prefix?client=obstore&...`` or ``az://container/prefix?...``.

    Raises:
        ConfigurationError: For a malformed URL or option, naming it and the URL.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in S3_SCHEMES:
        service: Literal["s3", "azure"] = "s3"
        allowed, secrets = _S3_URL_OPTIONS, _S3_SECRETS
    elif scheme in AZURE_SCHEMES:
        service, allowed, secrets = "azure", _AZURE_URL_OPTIONS, _AZURE_SECRETS
    else:
        raise ConfigurationError(f"not an S3 or Azure URL [url={url}]")
    # abfss://container@account.dfs.core.windows.net names a container, not a user.
    if parts.password or (parts.username and service == "s3"):
        raise ConfigurationError(
            "credentials never go in a backend URL: use the environment or keyword options "
            f"[url={_redact(url)}]"
        )
    container, account = parts.hostname or "", None
    if service == "azure" and "@" in parts.netloc:
        # abfss://container@account.dfs.core.windows.net/prefix (fsspec's spelling)
        container, _, host = parts.netloc.partition("@")
        account = host.split(".", 1)[0] or None
    if not container:
        example = "s3://bucket/prefix" if service == "s3" else f"{scheme}://container/prefix"
        raise ConfigurationError(f"backend URL needs a bucket or container: {example} [url={url}]")
    query_names = {pair.split("=", 1)[0] for pair in parts.query.split("&") if pair}
    if query_names & secrets:
        raise ConfigurationError(
            f"{', '.join(sorted(query_names & secrets))} never go in a backend URL: pass them "
            f"as keyword options or in the environment [url={_redact(url)}]"
        )
    options = merge_options(
        url,
        parts.query,
        keywords,
        allowed=allowed
        | secrets
        | _CLIENT_OPTIONS
        | _BACKEND_OPTIONS
        | {"config"}
        | (ALL_NAMES if service == "s3" else set()),
    )
    if service == "s3":
        options = for_client(url, options, "obstore")
    config = options.get("config")
    if config is not None and not isinstance(config, Mapping):
        raise ConfigurationError(f"option config must be a mapping of obstore settings [url={url}]")
    arguments: dict[str, Any] = {
        "allow_http": (
            None
            if options.get("allow_http") is None
            else option_flag(url, options, "allow_http", default=False)
        ),
        "connect_timeout": _number(url, options, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        "read_timeout": _number(url, options, "read_timeout", DEFAULT_READ_TIMEOUT),
        "request_timeout": _number(url, options, "request_timeout", DEFAULT_REQUEST_TIMEOUT),
        "max_retries": _whole(url, options, "max_retries", DEFAULT_MAX_RETRIES),
        "retry_timeout": _number(url, options, "retry_timeout", DEFAULT_RETRY_TIMEOUT),
        "conditional_writes": option_flag(url, options, "conditional_writes", default=True),
        "touch": option_choice(url, options, "touch", ("copy", "rewrite")) or "copy",
        "config": config,
        "endpoint": option_text(url, options, "endpoint"),
    }
    for name in secrets:
        arguments[name] = option_text(url, options, name)
    if service == "s3":
        arguments["region"] = option_text(url, options, "region")
        arguments["profile"] = option_text(url, options, "profile")
        arguments["metadata_endpoint"] = option_text(url, options, "metadata_endpoint")
        arguments["virtual_hosted_style"] = option_flag(
            url, options, "virtual_hosted_style", default=False
        )
    else:
        arguments["account"] = option_text(url, options, "account") or account
        arguments["use_emulator"] = option_flag(url, options, "use_emulator", default=False)
        arguments["msi_endpoint"] = option_text(url, options, "msi_endpoint")
    return ParsedUrl(service, unquote(container), unquote(parts.path), arguments)


def _number(url: str, options: Mapping[str, object], name: str, default: float) -> float:
    value = option_float(url, options, name)
    return default if value is None else value


def _whole(url: str, options: Mapping[str, object], name: str, default: int) -> int:
    value = option_int(url, options, name)
    return default if value is None else value


def _redact(url: str) -> str:
    """The URL without its query and user info, for messages about secrets in it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{parts.path}?..." if parts.query else f"{parts.scheme}://{host}"
