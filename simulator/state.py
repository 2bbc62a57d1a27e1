"""Shared, lock-protected simulator state: the scenario, statistics and fault countdowns.

The HTTP handlers run on the simulator's own event loop thread while tests call
``update_tenant``/``set_scenario`` from the main thread, so every read or write of the scenario
happens under one ``threading.RLock``. Critical sections are short (dict look-ups, slicing a page).

Stored tenants are copy-on-write: ``update_tenant`` replaces a tenant object, it never mutates one that
handlers may have handed out, so handlers serve the stored objects (read-only) without deep copies.
"""
from __future__ import annotations

import collections
import copy
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from .limits import Limiter
from .scenario import load_scenario, normalize_tenant, parse_datetime


LOG_LIMIT = 200_000  # requests_log keeps the most recent entries only


@dataclass
class SimResponse:
    """A transport-independent answer, so $batch items reuse the handlers of direct requests."""

    status: int
    body: Any = None  # JSON-serialisable object; None = empty body
    headers: dict[str, str] = field(default_factory=dict)
    throttled: bool = False  # a 429 produced by the scenario's limits (not by an injected fault)
    raw: bytes | None = None  # sent as it is instead of `body` (a fault's rawBody: text that need not be JSON)


@dataclass
class Fault:
    status: int | None
    body: Any
    has_body: bool
    retry_after: float | None
    delay: float
    raw_body: str | None = None  # sent verbatim (not JSON-encoded) instead of a body


class SimState:
    def __init__(self, scenario: dict[str, Any]) -> None:
        self.lock = threading.RLock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.throttled_counts: collections.Counter[str] = collections.Counter()
        # Bounded so a long demo or benchmark run cannot grow memory without limit; compact tuples
        # (endpoint, tenant, method, path, query, status, throttled), turned into dicts on demand.
        self.log: collections.deque[tuple[Any, ...]] = collections.deque(maxlen=LOG_LIMIT)
        self.sent_mail: list[dict[str, Any]] = []
        self._tenants: dict[str, dict[str, Any]] = {}
        self._position: dict[str, int] = {}  # tenant id -> index in scenario["tenants"]
        self._domains: dict[str, list[str]] = {}  # tenant id -> its verified domains (lower-case)
        self._by_domain: dict[str, str] = {}
        self.limiter: Limiter | None = None
        self.latency = 0.0  # seconds added to every request (asyncio.sleep)
        # Sorted (timestamp, record) views of the audit logs, rebuilt when a tenant changes, so a
        # tenant with many sign-ins is not re-parsed and re-sorted on every page request.
        self._sorted: dict[tuple[str, str], list[tuple[datetime, dict[str, Any]]]] = {}
        self.scenario: dict[str, Any] = {}
        self.set_scenario(scenario)

    # -- scenario -------------------------------------------------------------------------------
    def set_scenario(self, scenario: dict[str, Any] | str) -> None:
        sc = load_scenario(scenario)
        with self.lock:
            self.scenario = sc
            self._tenants = {}
            self._position = {}
            self._domains = {}
            self._by_domain = {}
            self._sorted = {}
            for i, t in enumerate(sc["tenants"]):
                self._position[t["tenantId"]] = i
                self._index(t)
            self.limiter = Limiter(sc["limits"]) if sc["limits"] is not None else None
            self.latency = sc["latencyMs"] / 1000.0

    def _index(self, t: dict[str, Any]) -> None:
        tid = t["tenantId"]
        self._tenants[tid] = t
        for dom in self._domains.pop(tid, ()):
            if self._by_domain.get(dom) == tid:
                del self._by_domain[dom]
        domains = [dom["name"].lower() for dom in t["graph"]["organization"].get("verifiedDomains") or []
                   if isinstance(dom, dict) and isinstance(dom.get("name"), str)]
        self._domains[tid] = domains
        for dom in domains:
            self._by_domain[dom] = tid
        for item, field_name in (("signIns", "createdDateTime"), ("directoryAudits", "activityDateTime")):
            recs = [(parse_datetime(r[field_name]), r) for r in t["graph"][item]]
            recs.sort(key=lambda pair: pair[0], reverse=True)  # newest first, stable for ties
            self._sorted[(tid, item)] = recs

    def update_tenant(self, tenant_id: str, fn: Callable[[dict[str, Any]], Any]) -> None:
        """Apply ``fn`` to a copy of the tenant, re-validate, then swap it in atomically.

        Working on a copy means a callback that raises, or leaves the tenant invalid, changes nothing.
        """
        with self.lock:
            tid = tenant_id.lower()
            if tid not in self._tenants:
                raise KeyError(f"unknown tenant {tenant_id}")
            work = copy.deepcopy(self._tenants[tid])
            fn(work)
            if str(work.get("tenantId", "")).lower() != tid:
                raise ValueError("update_tenant: tenantId cannot be changed")
            new = normalize_tenant(work, f"tenant {tid}")
            self.scenario["tenants"][self._position[tid]] = new
            self._index(new)

    def tenant(self, tenant_ref: str) -> dict[str, Any] | None:
        """Look a tenant up by GUID or by one of its verified domains (as Entra accepts both)."""
        ref = tenant_ref.lower()
        tid = ref if ref in self._tenants else self._by_domain.get(ref)
        return self._tenants.get(tid) if tid else None

    def sorted_records(self, tenant_id: str, item: str) -> list[tuple[datetime, dict[str, Any]]]:
        return self._sorted[(tenant_id, item)]

    @staticmethod
    def granted(tenant: dict[str, Any]) -> list[str]:
        """The app roles the app holds in the tenant now: none once consent is revoked or was never given."""
        return list(tenant["permissions"]) if tenant["consent"] is True else []

    def app_for(self, tenant: dict[str, Any]) -> dict[str, Any]:
        return tenant.get("app") or self.scenario["app"]

    # -- faults ---------------------------------------------------------------------------------
    def take_fault(self, tenant_id: str | None, key: str, method: str | None = None) -> Fault | None:
        """Consume one occurrence of the tenant's fault for ``key`` (``times`` counts down in place). A fault with a
        ``method`` hits only requests of that method (``method`` None: the caller does not say, so it matches)."""
        if tenant_id is None:
            return None
        with self.lock:
            tenant = self._tenants.get(tenant_id)
            faults = tenant.get("faults") or {} if tenant else {}
            return self._take(faults, key, method)

    def take_partner_fault(self, tenant_id: str | None, key: str, method: str | None = None) -> Fault | None:
        """Like take_fault, from ``partner.faults[tenant_id]`` (Partner Center and the partner tenant's endpoints)."""
        with self.lock:
            partner = self.scenario.get("partner") or {}
            faults = partner.get("faults", {}).get(tenant_id or "", {})
            return self._take(faults, key, method)

    @staticmethod
    def _take(faults: dict[str, Any], key: str, method: str | None) -> Fault | None:
        spec = faults.get(key)
        if spec is None:
            return None
        if method is not None and spec.get("method", method) != method:
            return None
        skip = spec.get("skip")
        if skip:
            # Served normally (e.g. the first page of a paged answer); the fault starts after `skip` requests.
            if skip <= 1:
                del spec["skip"]
            else:
                spec["skip"] = skip - 1
            return None
        times = spec.get("times")
        if times is not None:
            if times <= 1:
                del faults[key]  # cleared: the next request is served normally
            else:
                spec["times"] = times - 1
        return Fault(status=spec.get("status"), body=copy.deepcopy(spec.get("body")), has_body="body" in spec,
                     retry_after=spec.get("retryAfter"), delay=float(spec.get("delay", 0)),
                     raw_body=spec.get("rawBody"))

    # -- limits ---------------------------------------------------------------------------------
    def throttle(self, cls: str | None, tenant_id: str | None, app_id: str | None) -> tuple[bool, int | None]:
        """``(True, retry_after or None)`` when the scenario's limits refuse this request; it is counted
        against the limits otherwise. Always admitted when limits are off."""
        if self.limiter is None or cls is None:
            return False, None
        with self.lock:
            limiter = self.limiter  # set_scenario may have swapped it meanwhile
            admitted, retry_after = limiter.check(cls, tenant_id, app_id) if limiter else (True, None)
        return not admitted, retry_after

    def reset_limits(self) -> None:
        with self.lock:
            if self.limiter is not None:
                self.limiter.reset()

    # -- statistics -----------------------------------------------------------------------------
    def record(self, key: str, tenant_id: str | None, method: str, path: str, query: str, status: int,
               throttled: bool = False) -> None:
        # Only routing facts are kept: never headers, bodies, secrets or tokens.
        with self.lock:
            self.counts[key] += 1
            if throttled:
                self.throttled_counts[key] += 1
            self.log.append((key, tenant_id, method, path, query, status, throttled))

    def log_entries(self) -> list[dict[str, Any]]:
        """``requests_log`` as dicts; ``throttled`` is present only when the scenario has ``limits``
        (so scenarios without limits keep the original entry shape)."""
        with self.lock:
            with_flag = self.limiter is not None
            rows = list(self.log)
        out = []
        for key, tenant, method, path, query, status, throttled in rows:
            entry = {"endpoint": key, "tenant": tenant, "method": method, "path": path, "query": query,
                     "status": status}
            if with_flag:
                entry["throttled"] = throttled
            out.append(entry)
        return out

    def reset_stats(self) -> None:
        with self.lock:
            self.counts.clear()
            self.throttled_counts.clear()
            self.log.clear()
            self.sent_mail.clear()
