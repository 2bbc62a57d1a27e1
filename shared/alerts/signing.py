"""The webhook signature: `X-Authwatch-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

Standard library only, so a receiver can copy this file as it is (shared/alerts/README.md shows how to use it).
The timestamp is part of what is signed, so a captured request cannot be replayed once it is older than the
receiver's tolerance, and `v1` may appear more than once (a receiver accepts any that matches: room for rotating
the secret without a gap).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime

SIGNATURE_HEADER = "X-Authwatch-Signature"
DEFAULT_TOLERANCE_S = 300
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")


def _digest(body: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + bytes(body), hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, *, timestamp: int) -> str:
    """The header value for `body` sent at `timestamp` (whole unix seconds)."""
    if not secret:
        raise ValueError("a signing secret is required")
    return f"t={int(timestamp)},v1={_digest(body, secret, int(timestamp))}"


def verify_signature(body: bytes, header: str, secret: str, *, now: datetime | float,
                     tolerance_s: float = DEFAULT_TOLERANCE_S) -> bool:
    """True when `header` is a valid signature of exactly `body` (the raw bytes received, before any JSON parsing)
    made with `secret` no more than `tolerance_s` seconds before or after `now` (a datetime or unix seconds).

    False for anything else: a tampered body, another secret, a stale or future timestamp, a malformed header."""
    if not isinstance(body, (bytes, bytearray)) or not isinstance(header, str) or not secret:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, separator, value = part.strip().partition("=")
        if not separator:
            return False
        if key == "t":
            if timestamp is not None or not _TIMESTAMP.match(value):
                return False
            timestamp = int(value)
        elif key == "v1":
            if _HEX_DIGEST.match(value):
                candidates.append(value.lower())
        # other keys (a future scheme, "v0") are ignored, as Stripe-style receivers do
    if timestamp is None or not candidates:
        return False
    current = now.timestamp() if isinstance(now, datetime) else float(now)
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = _digest(body, secret, timestamp)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
