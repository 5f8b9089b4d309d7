"""The S3 client a backend sends requests with: passed in, or built on first use."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import aioboto3
from aiobotocore.config import AioConfig

from casstore.backends.s3._options import (
    AddressingStyle,
    RetryMode,
    client_config,
    new_session,
    no_expect_continue,
    preload,
)
from casstore.errors import ConfigurationError

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from types_aiobotocore_s3.client import S3Client


class ClientSource:
    """Hands out one S3 client: the caller's (never closed here), or our own.

    Our own is built from the options and the standard AWS credential chain
    on first use, shared by concurrent first callers, and closed (then built
    again if used again) by :meth:`aclose`.

    Args:
        bucket: The bucket, for error messages.
        client: A client to use as is; the other options must then be unset.
        setup_errors: Returns a context that maps botocore errors raised
            while entering a built client to casstore's.
        session: Remaining arguments: as :class:`~casstore.backends.s3.S3Backend`'s.

    Raises:
        ConfigurationError: For options combined with ``client``, both
            ``session`` and ``profile``, or a profile that does not exist.
    """

    def __init__(
        self,
        bucket: str,
        client: S3Client | None,
        setup_errors: Callable[[], AbstractContextManager[None]],
        *,
        session: aioboto3.Session | None,
        region: str | None,
        endpoint_url: str | None,
        profile: str | None,
        addressing_style: AddressingStyle | None,
        retry_mode: RetryMode | None,
        max_attempts: int | None,
        connect_timeout: float | None,
        read_timeout: float | None,
        max_pool_connections: int | None,
    ) -> None:
        builder_options = {
            "session": session,
            "region": region,
            "endpoint_url": endpoint_url,
            "profile": profile,
            "addressing_style": addressing_style,
            "retry_mode": retry_mode,
            "max_attempts": max_attempts,
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "max_pool_connections": max_pool_connections,
        }
        self.client: S3Client | None = client
        """The client in use; None before our own is built and after it is closed."""
        self._setup_errors = setup_errors
        self._context: AbstractAsyncContextManager[S3Client] | None = None
        self._task: asyncio.Task[S3Client] | None = None
        self._region = region
        self._endpoint_url = endpoint_url
        if client is not None:
            given = sorted(name for name, value in builder_options.items() if value is not None)
            if given:
                raise ConfigurationError(
                    f"options {', '.join(given)} build a client; they cannot be combined with "
                    f"client=, whose own configuration is used [bucket={bucket}]"
                )
            self._session: aioboto3.Session | None = None
            self.config: AioConfig | None = None
            """The botocore configuration of the client we build (None: not ours)."""
            return
        if session is not None and profile is not None:
            raise ConfigurationError("pass either session= or profile=, not both")
        self._session = session or new_session(profile)
        self.config = client_config(
            retry_mode=retry_mode,
            max_attempts=max_attempts,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_pool_connections,
            addressing_style=addressing_style or ("path" if endpoint_url else None),
        )

    @property
    def region(self) -> str | None:
        """The client's region, else the configured one, else the session's."""
        client = self.client
        region = client.meta.region_name if client else self._region
        if region is None and self._session is not None:
            region = self._session.region_name
        return region

    @property
    def endpoint(self) -> str | None:
        """The client's endpoint URL, else the configured one (None: AWS)."""
        client = self.client
        return client.meta.endpoint_url if client else self._endpoint_url

    async def get(self) -> S3Client:
        """Return the client, building and entering our own on first use."""
        if self.client is not None:
            return self.client
        task = self._task
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._task = asyncio.ensure_future(self._open())
        # Shielded: building a client costs seconds of CPU on a loaded machine;
        # a caller whose deadline passes stops waiting, the build goes on for
        # the next caller instead of starting over.
        return await asyncio.shield(task)

    async def aclose(self) -> None:
        """Close the client we built, if any (a build under way is cancelled)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        context, self._context = self._context, None
        if context is not None:
            self.client = None
            await context.__aexit__(None, None, None)

    async def _open(self) -> S3Client:
        assert self._session is not None
        await asyncio.to_thread(preload, self._session)
        context = self._session.client(
            "s3", region_name=self._region, endpoint_url=self._endpoint_url, config=self.config
        )
        with self._setup_errors():
            client = await context.__aenter__()
        client.meta.events.register_last("before-call.s3", no_expect_continue)
        self._context = context
        self.client = client
        return client
