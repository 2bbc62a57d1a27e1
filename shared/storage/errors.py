"""StorageUnavailable: the storage account did not answer — the one error every Table and Queue call raises for
transport failures, and the one place they become it.

The SDKs raise azure-core's ServiceRequestError (the request never reached the service: DNS, refused, connect
timeout) or ServiceResponseError (it did, but no complete answer came back: reset, read timeout) once their retries
are spent; authwatch's own per-call deadline raises TimeoutError. All three become StorageUnavailable, which names the
endpoint and what failed, never a key, a SAS or a connection string: the endpoint is scheme://host[:port] only (a SAS
lives in the query string, which is dropped), and the SDK's message is scrubbed of query strings and key-value secrets.
https://learn.microsoft.com/python/api/azure-core/azure.core.exceptions (ServiceRequestError, ServiceResponseError)

It subclasses AzureError, so code (and tests) that handle SDK errors as AzureError keep handling it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import (
    AzureError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.policies import AsyncHTTPPolicy

_QUERY = re.compile(r"\?[^\s'\"]*")
_SECRET = re.compile(r"(?i)\b(AccountKey|SharedAccessSignature|sig|Authorization)\s*[=:]\s*[^\s;&'\"]+")
_CAUSE_CHARS = 300


class StorageUnavailable(AzureError):
    """A storage call failed in transport (unreachable, no answer in time). `endpoint` is scheme://host[:port]."""

    def __init__(self, endpoint: str, cause: str) -> None:
        self.endpoint = endpoint
        self.cause = cause
        super().__init__(f"storage unavailable: {endpoint}: {cause}")


def endpoint_of(url: str) -> str:
    """scheme://host[:port] of a request URL: no path, no query (a SAS), no user info."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def scrub(text: str) -> str:
    """An SDK error message, safe to log: query strings and key=value secrets removed, bounded."""
    text = _SECRET.sub(lambda match: f"{match.group(1)}=<redacted>", _QUERY.sub("?<redacted>", text))
    return text if len(text) <= _CAUSE_CHARS else text[:_CAUSE_CHARS] + "…"


def _what_failed(error: BaseException, deadline_s: float) -> str:
    if isinstance(error, ServiceRequestTimeoutError):
        return "connecting timed out"
    if isinstance(error, ServiceRequestError):
        return "could not connect"
    if isinstance(error, ServiceResponseTimeoutError):
        return "no response in time"
    if isinstance(error, ServiceResponseError):
        return "the connection failed before a complete response"
    return f"no answer within {deadline_s:g} s"


def unavailable(url: str, error: BaseException, deadline_s: float) -> StorageUnavailable:
    detail = scrub(f"{type(error).__name__}: {error}".rstrip(": "))
    return StorageUnavailable(endpoint_of(url), f"{_what_failed(error, deadline_s)} ({detail})")


async def guarded(send: Callable[[Any], Awaitable[Any]], request: Any, deadline_s: float) -> Any:
    """Run one pipeline call (retries included) within `deadline_s`; transport failures → StorageUnavailable.

    The deadline is a backstop for waits no SDK timeout bounds (DNS, a pool slot, a server trickling bytes: aiohttp's
    read timeout is per read, not per response)."""
    try:
        async with asyncio.timeout(deadline_s):
            return await send(request)
    except (ServiceRequestError, ServiceResponseError, TimeoutError) as error:
        raise unavailable(request.http_request.url, error, deadline_s) from error


class StorageUnavailablePolicy(AsyncHTTPPolicy):  # type: ignore[type-arg]
    """The outermost policy of a Table client's pipeline (azure-core `per_call_policies` go before every other
    policy, so this sees what is left after the retry policy gave up)."""

    def __init__(self, deadline_s: float) -> None:
        super().__init__()
        self.deadline_s = deadline_s

    async def send(self, request: Any) -> Any:
        return await guarded(self.next.send, request, self.deadline_s)


async def conditional_write(write: Callable[[], Awaitable[Any]]) -> Any:
    """A Table transaction guarded by its own conditions (If-Match on the state row, inserts that fail on an existing
    row), tried once more when the request did not get through (ServiceRequestError: refused, or a pooled connection
    the service had closed — Azurite's Node server drops idle keep-alive connections after 5 s, aiohttp keeps them
    15 s). azure-core never retries a POST itself, as it cannot know whether the service applied it; here a repeat
    is harmless: had the first been applied, the repeat is refused (412/409) as a conflict and nothing is written
    twice. At most two calls, each within its own CALL_DEADLINE_S."""
    try:
        return await write()
    except StorageUnavailable as error:
        if not isinstance(error.__cause__, ServiceRequestError):
            raise
    return await write()
