"""Sending one alert over HTTP: bounded exponential backoff inside one attempt, and a classification of every
failure as transient (worth retrying: network errors, timeouts, 408/425/429/5xx) or permanent (other 4xx, a refused
target), so the caller knows whether the queue should retry the message.

Webhook requests go through the transport directly, not through an httpx client: httpx's client logs every
request's URL at INFO, and Slack and Teams URLs are secrets. Nothing here ever puts a URL into an error text.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx

from shared.alerts.safety import UnsafeTarget, resolve_target

USER_AGENT = "authwatch/0.1 (+alert delivery)"
MAX_RESPONSE_BYTES = 64 * 1024
_TRANSIENT_STATUSES = {408, 425, 429}


@dataclass(frozen=True)
class RetryPolicy:
    """Inside one attempt: `retries` more tries after the first, waiting backoff_s, 2×, 4×… (capped at max_delay_s);
    a Retry-After longer than max_delay_s ends the attempt early (the queue's own retry waits instead).
    `timeout_s` bounds one whole request (connect, send, the complete answer), not each read."""

    retries: int = 3
    backoff_s: float = 0.5
    max_delay_s: float = 10.0
    timeout_s: float = 10.0

    def delay(self, retry: int) -> float:
        return min(self.backoff_s * (2 ** retry), self.max_delay_s)


class DeliveryError(Exception):
    """One send failed. `reason` is fit for logs and Table rows (status code or exception type, never a URL)."""

    def __init__(self, reason: str, *, permanent: bool = False, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.status = status
        self.retry_after = retry_after
        self.tries = 1


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max((moment - datetime.now(timezone.utc)).total_seconds(), 0.0)


def check_response(status: int, headers: Mapping[str, str], *, what: str = "HTTP") -> None:
    """Raise the DeliveryError a non-2xx answer stands for."""
    if 200 <= status < 300:
        return
    retry_after = _retry_after(headers.get("retry-after"))
    if status in _TRANSIENT_STATUSES or status >= 500:
        raise DeliveryError(f"{what} {status}", status=status, retry_after=retry_after)
    if 300 <= status < 400:
        raise DeliveryError(f"{what} {status} (redirects are not followed)", permanent=True, status=status)
    raise DeliveryError(f"{what} {status}", permanent=True, status=status)


async def with_retries(operation: Callable[[], Awaitable[None]], policy: RetryPolicy, *,
                       sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> int:
    """Run `operation` until it succeeds, a permanent failure, or the retries are used up. Returns the number of
    tries; the DeliveryError raised carries `.tries`."""
    for retry in range(policy.retries + 1):
        try:
            await operation()
            return retry + 1
        except DeliveryError as error:
            error.tries = retry + 1
            if error.permanent or retry == policy.retries:
                raise
            delay = policy.delay(retry)
            if error.retry_after is not None:
                if error.retry_after > policy.max_delay_s:
                    raise  # the receiver asks for more patience than one attempt has: the queue retries later
                delay = max(delay, error.retry_after)
            await sleep(delay)
    raise AssertionError("unreachable")


def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()


async def post_pinned(url: httpx.URL, body: bytes, headers: Mapping[str, str], *, allow_loopback: bool,
                      timeout_s: float, ssl_context: ssl.SSLContext | None = None) -> None:
    """POST `body` to `url` once, connected to an address checked by `resolve_target` (see safety.py).

    `timeout_s` is the deadline of the WHOLE request — resolving, connecting, sending and reading the complete answer
    — not only of each read: a receiver that drips its answer a byte at a time is cut off at the deadline."""
    try:
        async with asyncio.timeout(timeout_s):
            status, answer_headers = await _post_once(url, body, headers, allow_loopback=allow_loopback,
                                                      timeout_s=timeout_s, ssl_context=ssl_context)
    except TimeoutError:
        raise DeliveryError(f"timed out (no complete answer within {timeout_s:g} s)") from None
    check_response(status, answer_headers)


async def _post_once(url: httpx.URL, body: bytes, headers: Mapping[str, str], *, allow_loopback: bool,
                     timeout_s: float, ssl_context: ssl.SSLContext | None) -> tuple[int, httpx.Headers]:
    try:
        addresses = await resolve_target(url, allow_loopback=allow_loopback)
    except UnsafeTarget as error:
        raise DeliveryError(f"refused target: {error}", permanent=True) from None
    address = addresses[0]
    pinned = url.copy_with(host=str(address))
    extensions: dict = {"timeout": {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}}
    if url.scheme == "https":
        extensions["sni_hostname"] = url.host  # the certificate is checked against the name, not the address
    request = httpx.Request("POST", pinned, content=body, extensions=extensions, headers={
        "Host": url.netloc.decode("ascii"), "User-Agent": USER_AGENT, "Content-Type": "application/json",
        **headers})
    transport = httpx.AsyncHTTPTransport(verify=ssl_context or _ssl_context(), retries=0)
    try:
        async with transport:
            response = await transport.handle_async_request(request)
            try:
                received = 0
                async for chunk in response.aiter_raw():  # drain (bounded) so the connection closes cleanly
                    received += len(chunk)
                    if received > MAX_RESPONSE_BYTES:
                        break
            finally:
                await response.aclose()
    except httpx.TimeoutException as error:
        raise DeliveryError(f"timed out ({type(error).__name__})") from None
    except httpx.TransportError as error:  # connect errors, resets, protocol errors
        raise DeliveryError(f"connection failed ({type(error).__name__})") from None
    return response.status_code, response.headers
