"""ObjectStoreBackend: casstore's backend interface over an obstore S3 or Azure store."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import obstore
from obstore.store import AzureStore, S3Store

from casstore.backends._base import Backend, ObjectStat, check_range
from casstore.backends._keys import check_key
from casstore.backends.objectstore._errors import (
    NOT_FOUND,
    describe_store,
    missing_container,
    settings_errors,
    translate,
)
from casstore.backends.objectstore._listing import list_objects, object_stat
from casstore.backends.objectstore._options import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RETRY_TIMEOUT,
    ClientSettings,
    TouchMode,
    azure_store,
    check_bucket,
    check_container,
    check_prefix,
    parse_url,
    s3_aux_store,
    s3_store,
)
from casstore.backends.objectstore._transfer import get_bounded, get_range, put_object
from casstore.errors import ConfigurationError

__all__ = ["ObjectStoreBackend"]


class ObjectStoreBackend(Backend):
    """Stores each object in an S3 bucket or Azure container, through obstore.

    The object for key ``k`` lives at ``{prefix}/{k}`` in the store's bucket or
    container, and nowhere else: every key is checked
    (:func:`~casstore.backends.check_key`) and joined under the prefix, and the
    store is bound to one bucket or container. An existence check is a HEAD, a
    write a single PUT with ``If-None-Match: *`` (obstore's ``mode="create"``)
    so that the loser of a create race learns the object exists, and a
    refresh (:meth:`touch`) is a server-side copy of the object onto itself:
    on S3 with ``x-amz-metadata-directive: REPLACE`` (S3 refuses a self-copy
    that changes nothing), on Azure a plain Copy Blob.

    Build one with :meth:`s3`, :meth:`azure` or :meth:`from_url` (credentials
    from each cloud's standard chain), or wrap a store you configured yourself.
    Stores hold no event-loop state: one backend may serve several loops.

    Args:
        store: An ``obstore.store.S3Store`` or ``AzureStore`` without a prefix.
        prefix: Key prefix under which all objects live, e.g. ``"prod"``;
            leading and trailing slashes are ignored.
        conditional_writes: Create objects with ``If-None-Match: *`` (default).
            Set False for servers that ignore it (some S3-compatible ones) or reject
            it, so that :attr:`conditional_writes` does not claim a precision they lack.
        touch: ``"copy"`` (default): refresh by a server-side copy onto itself;
            ``"rewrite"``: read the object and write the same bytes again, for
            servers that refuse such copies.

    Raises:
        ConfigurationError: For an unsupported store, a store with its own
            prefix, or an invalid bucket, container, prefix or option.
    """

    def __init__(
        self,
        store: S3Store | AzureStore,
        prefix: str = "",
        *,
        conditional_writes: bool = True,
        touch: TouchMode = "copy",
    ) -> None:
        if isinstance(store, S3Store):
            self._service = "s3"
            self._container = check_bucket(store.config.get("bucket"))
        elif isinstance(store, AzureStore):
            self._service = "azure"
            self._container = check_container(store.config.get("container_name"))
        else:
            raise ConfigurationError(
                f"ObjectStoreBackend needs an obstore S3Store or AzureStore, got "
                f"{type(store).__name__}"
            )
        if store.prefix:
            raise ConfigurationError(
                f"pass the prefix to ObjectStoreBackend (prefix={store.prefix!r}), not to the "
                "store: casstore checks every key against it"
            )
        if touch not in ("copy", "rewrite"):
            raise ConfigurationError(f"touch must be 'copy' or 'rewrite', got {touch!r}")
        self._store = store
        self._prefix = check_prefix(prefix)
        self._root = f"{self._prefix}/" if self._prefix else ""
        self._touch = touch
        self.conditional_writes = bool(conditional_writes)
        # Refreshes and deletes go through a sibling store on S3 (see s3_aux_store).
        self._aux_store = s3_aux_store(store) if isinstance(store, S3Store) else store
        self._facts = describe_store(self._service, self._container, self._prefix, store.config)

    @classmethod
    def s3(
        cls,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        virtual_hosted_style: bool = False,
        metadata_endpoint: str | None = None,
        allow_http: bool | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_timeout: float = DEFAULT_RETRY_TIMEOUT,
        conditional_writes: bool = True,
        touch: TouchMode = "copy",
        config: Mapping[str, Any] | None = None,
    ) -> ObjectStoreBackend:
        """A backend on an S3 bucket (AWS or any S3-compatible server).

        Unset values come from the environment (``AWS_ACCESS_KEY_ID``,
        ``AWS_REGION``, ``AWS_ENDPOINT_URL``, ...), and credentials from the
        chain of ``object_store``: environment, web identity token, container
        credentials, then the instance metadata endpoint; ``profile=`` reads a
        named profile through boto3 instead. See docs/backends.md.

        Args:
            bucket: The bucket name.
            prefix: Key prefix under which all objects live.
            endpoint: An S3-compatible server, e.g. ``http://127.0.0.1:9000``.
            region: The bucket's region (default ``us-east-1``).
            access_key_id: Access key id (keep secrets out of code and URLs).
            secret_access_key: Secret access key.
            session_token: Session token of temporary credentials.
            profile: A named profile of the shared AWS config files (needs boto3).
            virtual_hosted_style: Address the bucket as a host name (default: path style).
            metadata_endpoint: The instance metadata endpoint to take credentials
                from when none are given (default ``http://169.254.169.254``).
            allow_http: Allow plain HTTP (default: only for an ``http://`` endpoint).
            connect_timeout: Seconds to establish a connection (default 10).
            read_timeout: Seconds to wait for more data on a connection (default 60).
            request_timeout: Seconds a whole request may take (default 300).
            max_retries: Retries of a failed request: 5xx answers, connection
                errors, timeouts (default 4, so five attempts).
            retry_timeout: Seconds after which no retry starts (default 180).
            conditional_writes: See the class.
            touch: See the class.
            config: Further obstore ``S3Config`` settings (e.g. ``server_side_encryption``).
        """
        settings = ClientSettings(
            allow_http, connect_timeout, read_timeout, request_timeout, max_retries, retry_timeout
        )
        check_bucket(bucket)
        with settings_errors(f"S3 bucket {bucket!r}"):
            store = s3_store(
                bucket,
                settings,
                endpoint=endpoint,
                region=region,
                access_key_id=access_key_id,
                secret_access_key=secret_access_key,
                session_token=session_token,
                profile=profile,
                virtual_hosted_style=virtual_hosted_style,
                metadata_endpoint=metadata_endpoint,
                config=config,
            )
        return cls(store, prefix, conditional_writes=conditional_writes, touch=touch)

    @classmethod
    def azure(
        cls,
        container: str,
        prefix: str = "",
        *,
        account: str | None = None,
        account_key: str | None = None,
        sas_token: str | None = None,
        endpoint: str | None = None,
        use_emulator: bool = False,
        msi_endpoint: str | None = None,
        allow_http: bool | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_timeout: float = DEFAULT_RETRY_TIMEOUT,
        conditional_writes: bool = True,
        touch: TouchMode = "copy",
        config: Mapping[str, Any] | None = None,
    ) -> ObjectStoreBackend:
        """A backend on an Azure Blob Storage container.

        Unset values come from the environment (``AZURE_STORAGE_ACCOUNT_NAME``,
        ``AZURE_STORAGE_ACCOUNT_KEY``, ...), and credentials from the chain of
        ``object_store``: account key, SAS token, service principal, workload
        identity, Azure CLI, then managed identity. See docs/backends.md.

        Args:
            container: The container name.
            prefix: Key prefix under which all objects live.
            account: The storage account name.
            account_key: The account's shared key (keep secrets out of code and URLs).
            sas_token: A shared access signature (percent-encoded, as the portal gives it).
            endpoint: Blob endpoint, e.g. ``http://127.0.0.1:10000/devstoreaccount1``
                (default ``https://{account}.blob.core.windows.net``).
            use_emulator: Talk to a local Azurite with its development account.
            msi_endpoint: The managed-identity token endpoint used when no
                other credentials are found.
            allow_http: Allow plain HTTP (default: only for an ``http://`` endpoint).
            connect_timeout: See :meth:`s3`.
            read_timeout: See :meth:`s3`.
            request_timeout: See :meth:`s3`.
            max_retries: See :meth:`s3`.
            retry_timeout: See :meth:`s3`.
            conditional_writes: See the class.
            touch: See the class.
            config: Further obstore ``AzureConfig`` settings.
        """
        settings = ClientSettings(
            allow_http, connect_timeout, read_timeout, request_timeout, max_retries, retry_timeout
        )
        check_container(container)
        with settings_errors(f"Azure container {container!r}"):
            store = azure_store(
                container,
                settings,
                account=account,
                account_key=account_key,
                sas_token=sas_token,
                endpoint=endpoint,
                use_emulator=use_emulator,
                msi_endpoint=msi_endpoint,
                config=config,
            )
        return cls(store, prefix, conditional_writes=conditional_writes, touch=touch)

    @classmethod
    def from_url(cls, url: str, **options: object) -> ObjectStoreBackend:
        """Build a backend from ``s3://bucket/prefix?client=obstore&...`` or ``az://container/prefix``.

        Azure also answers to ``azure://``, ``abfs[s]://`` (also as
        ``abfss://container@account.dfs.core.windows.net/prefix``) and
        ``adl://``. Options are the keyword arguments of :meth:`s3` or
        :meth:`azure`, in the query or as keyword arguments (which override
        the query); secrets only as keyword arguments or in the environment.

        Raises:
            ConfigurationError: For a malformed URL or option, naming it.
        """
        parsed = parse_url(url, options)
        build = cls.s3 if parsed.service == "s3" else cls.azure
        return build(parsed.container, parsed.prefix, **parsed.arguments)

    @property
    def store(self) -> S3Store | AzureStore:
        """The obstore store objects are read from and written to."""
        return self._store

    @property
    def prefix(self) -> str:
        """The key prefix objects live under (no leading or trailing slash)."""
        return self._prefix

    def object_key(self, key: str) -> str:
        """Return the key in the bucket or container that holds ``key`` (checked first)."""
        return self._root + check_key(key)

    async def stat(self, key: str) -> ObjectStat | None:
        """HEAD the object: its size and last-modified time, or ``None`` if missing."""
        path = self.object_key(key)
        with self._translate("stat", path):
            try:
                meta = await obstore.head_async(self._store, path)
            except NOT_FOUND:
                return None  # a missing bucket looks the same: HEAD answers carry no body
        return object_stat(meta)

    async def put(self, key: str, data: bytes) -> bool:
        """PUT the object if absent, in one request (no multipart: conditional writes need one).

        Returns:
            False if the service reported that another writer created it first.
        """
        path = self.object_key(key)
        return await put_object(
            self._store,
            path,
            data,
            conditional=self.conditional_writes,
            translate=self._translate,
            facts=self._facts,
        )

    async def get(self, key: str, *, max_size: int | None = None) -> bytes:
        """GET the object's bytes; one above ``max_size`` is refused before its body is read."""
        path = self.object_key(key)
        with self._translate("get", path):
            return await get_bounded(self._store, path, max_size, self._facts)

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        """GET ``length`` bytes from ``offset`` (a ranged request; fewer at the end)."""
        check_range(offset, length)
        path = self.object_key(key)
        with self._translate("get", path):
            return await get_range(self._store, path, offset, length)

    async def touch(self, key: str) -> None:
        """Reset the object's last-modified time (see the class for how)."""
        path = self.object_key(key)
        with self._translate("touch", path):
            if self._touch == "rewrite":
                result = await obstore.get_async(self._store, path)
                body = await result.bytes_async()
                await obstore.put_async(self._store, path, body, use_multipart=False)
            elif self._service == "s3":
                # Without overwrite, the refresh store's copy carries the REPLACE directive.
                await obstore.copy_async(self._aux_store, path, path, overwrite=False)
            else:
                await obstore.copy_async(self._store, path, path, overwrite=True)

    async def delete(self, key: str) -> None:
        """DELETE the object; a missing object is not an error (a missing container is)."""
        path = self.object_key(key)
        with self._translate("delete", path):
            try:
                await obstore.delete_async(self._aux_store, path)
            except NOT_FOUND as exc:
                if missing_container(exc):
                    raise
                # Azure answers 404 for a missing blob; S3 answers 204.

    async def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        """List keys starting with ``prefix`` (a string prefix), without the configured one."""
        async for key, meta in list_objects(self._store, self._root, prefix, self._translate):
            yield key, meta["size"]

    async def scan_stat(self, prefix: str = "") -> AsyncIterator[tuple[str, ObjectStat]]:
        """List keys with sizes and ages: the listing has them, no request per object."""
        async for key, meta in list_objects(self._store, self._root, prefix, self._translate):
            yield key, object_stat(meta)

    async def move(self, src: str, dst: str) -> bool:
        """Copy server-side onto ``dst`` (a new object: a fresh age), then delete ``src``.

        The copy is complete before the delete is sent, so a failure midway
        leaves the object at ``src``, ``dst`` or both, never at neither; the
        delete removes exactly the checked ``src`` key, nothing else.
        """
        source, target = self.object_key(src), self.object_key(dst)
        with self._translate("move", source):
            try:
                await obstore.copy_async(self._store, source, target, overwrite=True)
            except NOT_FOUND as exc:
                if missing_container(exc):
                    raise
                return False
        await self.delete(src)
        return True

    def describe(self) -> Mapping[str, str]:
        """Return backend, bucket or container, prefix (if any), region or account, endpoint."""
        return dict(self._facts)

    def _translate(self, operation: str, path: str) -> contextlib.AbstractContextManager[None]:
        return translate(self._service, operation, path, self._facts)
