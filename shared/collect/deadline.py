"""One deadline per tenant collection, and the waits it bounds.

Why: a queue-triggered function that runs past host.json's `functionTimeout` (10 minutes here) is killed and its
message retried, then poisoned after `maxDequeueCount` attempts
(https://learn.microsoft.com/en-us/azure/azure-functions/functions-host-json#functiontimeout,
https://learn.microsoft.com/en-us/azure/azure-functions/functions-bindings-storage-queue-trigger#poison-messages):
the tenant then gets no state, no results, no alert. Microsoft asks a throttled client to wait the Retry-After
seconds before it retries (https://learn.microsoft.com/en-us/graph/throttling#best-practices-to-handle-throttling),
and the SDK's retry honours any Retry-After under 180 s, three times per request — a persistent 179 s header alone
would keep one read ~9 minutes. So every wait of a collection — a Retry-After sleep, a throttling-budget slot, a
token request, an answer — is bounded by one deadline inside the function timeout (AUTHWATCH_TENANT_DEADLINE_SECONDS,
leaving time to evaluate and persist). A retry whose wait would end past it is not attempted (retrying sooner would
disobey Microsoft's Retry-After); the source is recorded as DeadlineExceeded, the other sources keep what they read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx
from kiota_http.middleware import RetryHandler
from kiota_http.middleware.middleware import BaseMiddleware
from kiota_http.middleware.options import RetryHandlerOption
from kiota_http.middleware.retry_handler import RETRY_ATTEMPT

from shared.collect.errors import DeadlineExceeded, TokenTimeout

# The default leaves 3 of functionTimeout's 10 minutes (host.json) to load, evaluate, persist and enqueue.
DEFAULT_TENANT_DEADLINE_S = 420.0


@dataclass(frozen=True)
class Deadline:
    """A moment on the monotonic clock (immune to wall-clock steps) and the budget it was set from."""

    at: float
    seconds: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(at=time.monotonic() + seconds, seconds=seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def allows(self, wait: float) -> bool:
        """Whether a wait of `wait` seconds, starting now, ends before the deadline."""
        return time.monotonic() + wait < self.at

    def describe(self) -> str:
        return f"this tenant's collection deadline ({self.seconds:g} s, {self.remaining():.1f} s left)"


# The collection being run in this task (and the tasks it starts, which copy the context): the pooled HTTP clients
# are shared by every tenant, so the retry middleware finds the request's deadline here, not on the client.
_CURRENT: ContextVar[Deadline | None] = ContextVar("authwatch_collection_deadline", default=None)


def current() -> Deadline | None:
    return _CURRENT.get()


@contextmanager
def applied(deadline: Deadline) -> Iterator[None]:
    """Run the body (and every task it creates) under `deadline`."""
    token = _CURRENT.set(deadline)
    try:
        yield
    finally:
        _CURRENT.reset(token)


class DeadlineRetryHandler(RetryHandler):
    """The SDK's retry policy (429/503/504, Retry-After honoured, otherwise its backoff; nothing at or past
    RetryHandlerOption.MAX_DELAY), except that a wait that would end past the collection's deadline is not slept:
    the request raises DeadlineExceeded naming the wait. It replaces the SDK's RetryHandler in the pipeline (one
    retry loop, tuned, rather than a second one stacked on top)."""

    async def send(self, request: httpx.Request, transport: httpx.AsyncBaseTransport) -> httpx.Response:
        # Read before the first attempt: the last middleware pops the request options off the request.
        options = self._get_current_options(request)
        attempt = 0
        while True:
            response = await BaseMiddleware.send(self, request, transport)
            if not (options.should_retry and self.should_retry(request, options, response)
                    and self.check_retry_valid(attempt, options)):
                return response
            wait = self.get_delay_time(attempt, response, options.max_delay)
            if wait >= RetryHandlerOption.MAX_DELAY:
                return response  # the SDK's own rule: a wait that long is not retried; the answer is the error
            deadline = current()
            await response.aclose()  # the connection goes back to the pool whether or not we retry
            if deadline is not None and not deadline.allows(wait):
                header = response.headers.get("retry-after")
                asked = f"Retry-After {header}" if header else f"a retry backoff of {wait:.1f} s"
                raise DeadlineExceeded(
                    f"Microsoft answered {response.status_code} with {asked}: waiting would end past "
                    f"{deadline.describe()}, so it was not retried", status=response.status_code)
            await asyncio.sleep(wait)
            attempt += 1
            request.headers[RETRY_ATTEMPT] = str(attempt)


class BoundedCredential:
    """An async credential whose token requests end within the client timeout and the deadline.

    azure-identity's transport does not take the client's timeout (azure-core waits up to 300 s for an answer), so a
    slow Entra token endpoint held a collection for as long as it took. A request that does not end in time raises
    TokenTimeout (the client timeout was the bound) or DeadlineExceeded (the deadline was)."""

    def __init__(self, inner: Any, timeout_s: float, deadline: Deadline) -> None:
        self._inner, self._timeout_s, self._deadline = inner, timeout_s, deadline

    async def _bounded(self, method: str, *scopes: str, **kwargs: Any) -> Any:
        left = self._deadline.remaining()
        by_deadline = left < self._timeout_s
        try:
            return await asyncio.wait_for(getattr(self._inner, method)(*scopes, **kwargs),
                                          left if by_deadline else self._timeout_s)
        except TimeoutError:
            if by_deadline:
                raise DeadlineExceeded(f"the token request to Entra had no answer before {self._deadline.describe()}"
                                       ) from None
            raise TokenTimeout(f"the token request to Entra had no answer within {self._timeout_s:g} s (the client "
                               "timeout): given up; the token endpoint is slow or unreachable") from None

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return await self._bounded("get_token", *scopes, **kwargs)

    async def get_token_info(self, *scopes: str, **kwargs: Any) -> Any:
        return await self._bounded("get_token_info", *scopes, **kwargs)

    async def close(self) -> None:
        await self._inner.close()

    def __repr__(self) -> str:
        return f"BoundedCredential({self._inner!r}, timeout_s={self._timeout_s:g})"
