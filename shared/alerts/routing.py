"""Routing rules: which channels an event goes to. Validated when loaded; every error names the rule and the field.

AUTHWATCH_ALERT_ROUTES (JSON):

    {"routes": [
        {"name": "gold-customers", "tags": ["gold"], "minSeverity": "medium", "channels": ["soc-teams", "soc-mail"]},
        {"name": "contoso-own-team", "tenants": ["8c1d0f4e-…"], "channels": ["contoso-slack"]},
        {"name": "siem", "channels": ["siem"], "informational": true, "digest": false}
     ],
     "default": {"channels": ["ops-slack"], "minSeverity": "high"}}

A route matches an event when every condition it sets holds: `tenants` (tenant ids) and `tags` (the registry's
tenant tags; any one is enough), `minSeverity` (low < medium < high; resolutions — control.recovered,
tenant.recovered — pass whatever their severity, so whoever got the alert hears it is over) and `events` (event
types). Informational events (enforcement.window_started, enforcement.confirmed, drift.strengthened) match only a
route that opts in with `"informational": true` or lists the type in `events`. The event goes to the channels of
EVERY matching route; the `default` route applies only when no route matched. `digest` (default true) says whether
the route's channels also get the reminder digest of still-open alerts.

When AUTHWATCH_ALERT_ROUTES is not set, every configured channel gets every non-informational event.

A tenant's registry entry may carry `routing` of the same shape: it replaces the global rules for that tenant, or,
with `"inherit": true`, comes on top of them (its default replacing the global one when it has one). Channels are
always the globally configured ones: a registry row never holds a URL or a secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from shared.alerts.content import INFORMATIONAL, RESOLUTIONS, SEVERITY_RANK, severity_rank
from shared.alerts.errors import AlertConfigError
from shared.state.events import EVENT_TYPES

ROUTES_SETTING = "AUTHWATCH_ALERT_ROUTES"
SEVERITIES = tuple(SEVERITY_RANK)
ROUTE_FIELDS = ("name", "tenants", "tags", "minSeverity", "events", "channels", "informational", "digest")
DEFAULT_FIELDS = ("name", "minSeverity", "events", "channels", "informational", "digest")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MAX_ROUTES = 200


@dataclass(frozen=True)
class TenantInfo:
    """What routing and rendering need to know about a tenant (from the registry when it is registered)."""

    tenant_id: str
    name: str
    tags: tuple[str, ...] = ()
    routing: dict[str, Any] | None = None
    enabled: bool = True


@dataclass(frozen=True)
class Route:
    name: str
    channels: tuple[str, ...]
    tenants: frozenset[str] | None = None
    tags: frozenset[str] | None = None
    min_severity: str = "low"
    events: frozenset[str] | None = None
    informational: bool = False
    digest: bool = True

    def matches(self, event: dict[str, Any], tenant: TenantInfo) -> bool:
        kind = event.get("type")
        if self.tenants is not None and tenant.tenant_id.lower() not in self.tenants:
            return False
        if self.tags is not None and not self.tags & {tag.lower() for tag in tenant.tags}:
            return False
        if self.events is not None and kind not in self.events:
            return False
        if kind in INFORMATIONAL and not (self.informational or (self.events is not None and kind in self.events)):
            return False
        if kind not in RESOLUTIONS and severity_rank(event.get("severity")) < severity_rank(self.min_severity):
            return False
        return True


@dataclass(frozen=True)
class Routing:
    routes: tuple[Route, ...] = ()
    default: Route | None = None

    def matching(self, event: dict[str, Any], tenant: TenantInfo) -> list[Route]:
        matched = [route for route in self.routes if route.matches(event, tenant)]
        if not matched and self.default is not None and self.default.matches(event, tenant):
            matched = [self.default]
        return matched

    def channels_for(self, event: dict[str, Any], tenant: TenantInfo) -> tuple[str, ...]:
        return _unique(name for route in self.matching(event, tenant) for name in route.channels)

    def digest_channels(self, event: dict[str, Any], tenant: TenantInfo) -> tuple[str, ...]:
        return _unique(name for route in self.matching(event, tenant) if route.digest for name in route.channels)

    def combined_with(self, base: Routing) -> Routing:
        """This tenant's rules on top of `base` (inherit)."""
        return Routing(routes=self.routes + base.routes, default=self.default or base.default)


def _unique(names: Any) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(name, None)
    return tuple(seen)


class _Reader:
    def __init__(self, where: str, label: str, data: dict[str, Any], allowed: tuple[str, ...],
                 channels: Collection[str]) -> None:
        self.where, self.label, self.data, self.channels = where, label, data, channels
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise self.error(unknown[0], f"unknown field (allowed: {', '.join(allowed)})")

    def error(self, field_name: str, message: str) -> AlertConfigError:
        return AlertConfigError(f"{self.where}: {self.label}: {field_name}: {message}")

    def strings(self, field_name: str, check: Any = None, what: str = "text") -> frozenset[str] | None:
        value = self.data.get(field_name)
        if value is None:
            return None
        if not isinstance(value, list) or not value:
            raise self.error(field_name, f"expected a non-empty list of {what}")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip() or len(item) > 64 or (check and not check(item)):
                raise self.error(f"{field_name}[{index}]", f"expected {what}, got {json.dumps(item)[:60]}")
        return frozenset(item.strip().lower() if field_name != "events" else item for item in value)

    def flag(self, field_name: str, default: bool) -> bool:
        value = self.data.get(field_name, default)
        if not isinstance(value, bool):
            raise self.error(field_name, f"expected true or false, got {json.dumps(value)[:40]}")
        return value

    def route(self, name: str, *, matchers: bool) -> Route:
        severity = self.data.get("minSeverity", "low")
        if severity not in SEVERITIES:
            raise self.error("minSeverity", f"expected one of {', '.join(SEVERITIES)}, got {json.dumps(severity)[:40]}")
        events = self.strings("events", lambda item: item in EVENT_TYPES, "event types such as control.failed "
                              f"(known: {', '.join(EVENT_TYPES)})")
        raw_channels = self.data.get("channels")
        if not isinstance(raw_channels, list) or not raw_channels:
            raise self.error("channels", "required: a non-empty list of channel names from AUTHWATCH_ALERT_CHANNELS")
        for index, channel in enumerate(raw_channels):
            if channel not in self.channels:
                configured = ", ".join(sorted(self.channels)) or "none: AUTHWATCH_ALERT_CHANNELS is empty"
                raise self.error(f"channels[{index}]", f"unknown channel {json.dumps(channel)[:60]} "
                                                       f"(configured: {configured})")
        return Route(
            name=name, channels=_unique(raw_channels),
            tenants=self.strings("tenants", lambda item: bool(_GUID.match(item)), "tenant ids (GUIDs)")
            if matchers else None,
            tags=self.strings("tags", None, "tags") if matchers else None,
            min_severity=severity, events=events, informational=self.flag("informational", False),
            digest=self.flag("digest", True))


def parse_routing(data: Any, *, channels: Collection[str], where: str = ROUTES_SETTING,
                  tenant_level: bool = False) -> tuple[Routing, bool]:
    """(routing, inherit). `inherit` is only allowed in a tenant's routing."""
    if not isinstance(data, dict):
        raise AlertConfigError(f"{where}: expected an object with \"routes\" and/or \"default\", got "
                               f"{type(data).__name__}")
    allowed = ("routes", "default", "inherit") if tenant_level else ("routes", "default")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise AlertConfigError(f"{where}: {unknown[0]}: unknown field (allowed: {', '.join(allowed)})")
    inherit = data.get("inherit", False)
    if not isinstance(inherit, bool):
        raise AlertConfigError(f"{where}: inherit: expected true or false")
    raw_routes = data.get("routes", [])
    if not isinstance(raw_routes, list) or len(raw_routes) > MAX_ROUTES:
        raise AlertConfigError(f"{where}: routes: expected a list of at most {MAX_ROUTES} routes")
    routes: list[Route] = []
    names: set[str] = set()
    for index, raw in enumerate(raw_routes):
        if not isinstance(raw, dict):
            raise AlertConfigError(f"{where}: routes[{index}]: expected an object, got {type(raw).__name__}")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            raise AlertConfigError(f"{where}: routes[{index}]: name: required (text of at most 64 characters)")
        if name in names:
            raise AlertConfigError(f"{where}: routes[{index}] '{name}': name: another route has the same name")
        names.add(name)
        routes.append(_Reader(where, f"routes[{index}] '{name}'", raw, ROUTE_FIELDS, channels)
                      .route(name, matchers=True))
    default = None
    if data.get("default") is not None:
        raw = data["default"]
        if not isinstance(raw, dict):
            raise AlertConfigError(f"{where}: default: expected an object with \"channels\"")
        default = _Reader(where, "default", raw, DEFAULT_FIELDS, channels).route(
            str(raw.get("name") or "default"), matchers=False)
    return Routing(routes=tuple(routes), default=default), inherit


def default_routing(channels: Collection[str]) -> Routing:
    """No AUTHWATCH_ALERT_ROUTES: every channel gets every non-informational event."""
    return Routing(default=Route(name="default", channels=tuple(channels))) if channels else Routing()
