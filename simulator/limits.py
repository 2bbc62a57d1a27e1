"""Microsoft's documented throttling limits, enforced per app (token ``appid``) and per tenant (``tid``).

Enabled by the scenario's top-level ``"limits"`` (see simulator/README.md, "Throttling"). Every limit is
a **sliding window log** on ``time.monotonic()``: a request is admitted when fewer than ``N`` admitted
requests of the same scope fall in the last ``windowSeconds`` (so "at most N in *any* W-second span",
the stricter reading of "N per W"; a client that never exceeds it also never exceeds a fixed window).
Throttled requests do not consume budget. ``Retry-After`` is the whole number of seconds (at least 1)
until the oldest admitted request of the violated scope leaves its window.

The log of a scope holds at most ``N`` timestamps, so a check is O(1) amortised and memory grows with
the number of active scopes (apps x tenants), never with the request count.
"""
from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

#: The documented limits (Microsoft Graph throttling docs, platform-facts.md). ``None`` = no limit.
# Microsoft Graph service limits: https://learn.microsoft.com/en-us/graph/throttling-limits (Conditional Access, reports, the global limit);
# Exchange admin API limits are not published, so its row is a generous stand-in.
DEFAULT_LIMITS: dict[str, dict[str, Any]] = {
    # /identity/conditionalAccess/*: 1 request per second per tenant across all apps; 429 without Retry-After.
    "conditionalAccess": {"perTenant": 1, "windowSeconds": 1},
    # /auditLogs/signIns + /auditLogs/directoryAudits together.
    "reports": {"perAppPerTenant": 5, "perApp": 122, "windowSeconds": 10},
    # Every Graph request (CA and reports included): the global 130,000 per 10 s per app across all tenants.
    # perAppPerTenant applies to the Graph requests that are neither CA nor reports; off (generous) by default.
    "graph": {"perAppPerTenant": None, "perApp": 130_000, "windowSeconds": 10},
    # Exchange admin API InvokeCommand, per tenant (all apps and cmdlets); off by default. Its 429s carry
    # Retry-After only when retryAfter is true ("Retry-After not guaranteed").
    "exchange": {"perTenant": None, "windowSeconds": 10, "retryAfter": False},
}
#: Latency (ms) applied to every request when ``limits`` are on and ``latencyMs`` is not given.
DEFAULT_LATENCY_WITH_LIMITS_MS = 50

#: Endpoint key -> limit class for Graph (any other routed Graph key is "graph"; ``graph.batch`` itself is not
#: limited, each of its items is).
GRAPH_CLASSES = {
    "graph.conditionalAccessPolicies": "conditionalAccess",
    "graph.signIns": "reports",
    "graph.directoryAudits": "reports",
    "graph.batch": None,
}

_COUNT_FIELDS = {"perTenant", "perApp", "perAppPerTenant"}


def normalize_limits(raw: Any, fail: Callable[[str, str], None]) -> dict[str, Any] | None:
    """Validate the scenario's ``limits`` and return it with every default filled in (``None`` = off).

    ``true``, ``{}`` or ``{"enabled": true}`` mean the documented limits; ``false``, ``null``, absent or
    ``{"enabled": false, ...}`` mean no throttling.
    """
    if raw is None or raw is False:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        fail("limits", f"must be an object, true, false or null, got {type(raw).__name__}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        fail("limits.enabled", f"must be true or false, got {enabled!r}")
    out: dict[str, Any] = {}
    for name in raw:
        if name == "enabled":
            continue
        if not name.startswith("_") and name not in DEFAULT_LIMITS:
            fail(f"limits.{name}", f"unknown limit class (allowed: {', '.join(DEFAULT_LIMITS)})")
    for name, defaults in DEFAULT_LIMITS.items():
        given = raw.get(name)
        given = {} if given is None else given
        if not isinstance(given, dict):
            fail(f"limits.{name}", "must be an object")
        cls = dict(defaults)
        for key, value in given.items():
            where = f"limits.{name}.{key}"
            if key.startswith("_"):
                continue
            if key not in defaults:
                fail(where, f"unknown field (allowed: {', '.join(defaults)})")
            if key in _COUNT_FIELDS:
                if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                    fail(where, f"must be a positive integer or null (no limit), got {value!r}")
            elif key == "windowSeconds":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    fail(where, f"must be a positive number of seconds, got {value!r}")
            elif key == "retryAfter" and not isinstance(value, bool):
                fail(where, f"must be true or false, got {value!r}")
            cls[key] = value
        out[name] = cls
    return out if enabled else None


@dataclass(frozen=True)
class _Rule:
    name: str  # also the first element of the window key
    limit: int
    window: float
    retry_after: bool
    scope: str  # "tenant" | "app" | "appTenant"


class Limiter:
    """Sliding-window-log throttling for the classes of :data:`DEFAULT_LIMITS`. Not thread-safe: callers hold
    the simulator's state lock."""

    def __init__(self, limits: dict[str, Any], clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._logs: dict[tuple[str, str | None, str | None], collections.deque[float]] = {}
        ca, rep, gr, exo = (limits[k] for k in ("conditionalAccess", "reports", "graph", "exchange"))

        def rules(*specs: tuple[str, int | None, float, bool, str]) -> tuple[_Rule, ...]:
            return tuple(_Rule(n, lim, float(w), ra, sc) for n, lim, w, ra, sc in specs if lim is not None)

        global_app = ("graph.perApp", gr["perApp"], gr["windowSeconds"], True, "app")
        self._rules: dict[str, tuple[_Rule, ...]] = {
            "conditionalAccess": rules(("conditionalAccess.perTenant", ca["perTenant"], ca["windowSeconds"], False,
                                        "tenant"), global_app),
            "reports": rules(("reports.perAppPerTenant", rep["perAppPerTenant"], rep["windowSeconds"], True,
                              "appTenant"),
                             ("reports.perApp", rep["perApp"], rep["windowSeconds"], True, "app"), global_app),
            "graph": rules(("graph.perAppPerTenant", gr["perAppPerTenant"], gr["windowSeconds"], True, "appTenant"),
                           global_app),
            "exchange": rules(("exchange.perTenant", exo["perTenant"], exo["windowSeconds"], exo["retryAfter"],
                               "tenant")),
        }

    def check(self, cls: str, tenant_id: str | None, app_id: str | None) -> tuple[bool, int | None]:
        """Admit (and count) one request of class ``cls``: ``(True, None)``; or refuse it without counting:
        ``(False, retry_after_seconds)`` where ``None`` means "send no Retry-After"."""
        rules = self._rules.get(cls)
        if not rules:
            return True, None
        now = self._clock()
        logs = []
        wait = 0.0
        header = True
        refused = False
        for rule in rules:
            scope = (tenant_id, None) if rule.scope == "tenant" else (
                (None, app_id) if rule.scope == "app" else (tenant_id, app_id))
            key = (rule.name, *scope)
            log = self._logs.get(key)
            if log is None:
                log = self._logs[key] = collections.deque()
            horizon = now - rule.window
            while log and log[0] <= horizon:
                log.popleft()
            if len(log) >= rule.limit:
                refused = True
                # The request is admitted again once enough old ones leave the window.
                wait = max(wait, log[len(log) - rule.limit] + rule.window - now)
                header = header and rule.retry_after
            logs.append(log)
        if refused:
            return False, (max(1, math.ceil(wait)) if header else None)
        for log in logs:
            log.append(now)
        return True, None

    def reset(self) -> None:
        self._logs.clear()
