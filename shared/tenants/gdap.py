"""An MSP's customers as its GDAP relationships describe them (pure: Graph's JSON and a clock in, a view out).

Each customer is the union of its delegated-admin relationships: the roles its ACTIVE relationships grant, the last
of their end dates, whether one still auto-extends. Microsoft's shapes:
  https://learn.microsoft.com/graph/api/resources/delegatedadminrelationship
  https://learn.microsoft.com/graph/api/resources/delegatedadmincustomer
Graph's own status `expiring` means "the relationship has passed its expiration date" (being deprovisioned), not
"ends soon"; "ends soon" is computed here from endDateTime and autoExtendDuration.

Which roles onboarding needs, from Microsoft's role pages (least privilege first):
  * admin consent through Partner Center: Global Administrator, Privileged Role Administrator or Cloud Application
    Administrator in the relationship (https://learn.microsoft.com/powershell/partnercenter/exchange-online-gdap-app);
  * Microsoft Graph app roles and a directory role assignment: Privileged Role Administrator is "the least privileged
    role supported" (https://learn.microsoft.com/graph/api/serviceprincipal-post-approleassignedto#permissions,
    https://learn.microsoft.com/graph/api/rbacapplication-post-roleassignments#permissions).
So Privileged Role Administrator alone covers every step; Global Administrator does too, and is not recommended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.model import format_time, parse_time_or_none

# Entra built-in role template ids (https://learn.microsoft.com/entra/identity/role-based-access-control/permissions-reference)
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
PRIVILEGED_ROLE_ADMINISTRATOR = "e8611ab8-c189-46e8-94e1-60213ab1f814"
CLOUD_APPLICATION_ADMINISTRATOR = "158c047a-c907-4556-b7ef-446551a6b5f7"
APPLICATION_ADMINISTRATOR = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"
GLOBAL_READER = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"
ROLE_NAMES: dict[str, str] = {
    GLOBAL_ADMINISTRATOR: "Global Administrator",
    PRIVILEGED_ROLE_ADMINISTRATOR: "Privileged Role Administrator",
    CLOUD_APPLICATION_ADMINISTRATOR: "Cloud Application Administrator",
    APPLICATION_ADMINISTRATOR: "Application Administrator",
    GLOBAL_READER: "Global Reader",
    "29232cdf-9323-42fd-ade2-1d097af3e4de": "Exchange Administrator",
    "31392ffb-586c-42d1-9346-e59415a2cc4e": "Exchange Recipient Administrator",
    "5d6b6bb7-de71-4623-b4af-96380a352509": "Security Reader",
    "194ae4cb-b126-40b2-bd5b-6091b380977d": "Security Administrator",
}
# (role that is needed, roles any one of which provides it)
NEEDED_ROLES: tuple[tuple[str, frozenset[str]], ...] = (
    (PRIVILEGED_ROLE_ADMINISTRATOR, frozenset({PRIVILEGED_ROLE_ADMINISTRATOR, GLOBAL_ADMINISTRATOR})),
)
CONSENT_ROLES = frozenset({GLOBAL_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR, CLOUD_APPLICATION_ADMINISTRATOR})
ENDED = frozenset({"expired", "terminated", "terminating", "terminationRequested", "expiring"})
PENDING = frozenset({"created", "approvalPending", "approved", "activating"})
KNOWN_STATUSES = frozenset({"active"}) | ENDED | PENDING
ENDS_SOON = timedelta(days=30)
NO_AUTO_EXTEND = frozenset({"PT0S", "P0D", ""})


class RelationshipError(ValueError):
    """A relationship Graph returned that authwatch cannot read (fail closed: it is named, never guessed)."""


def role_name(role_id: str) -> str:
    return ROLE_NAMES.get(role_id.lower(), role_id)


@dataclass(frozen=True)
class Relationship:
    id: str
    name: str
    customer_id: str
    customer_name: str
    status: str
    roles: frozenset[str]
    end: datetime | None
    auto_extend: bool

    @classmethod
    def from_graph(cls, item: Mapping[str, Any]) -> Relationship:
        customer = item.get("customer")
        status = item.get("status")
        access = item.get("accessDetails")
        if not isinstance(customer, Mapping) or not isinstance(customer.get("tenantId"), str):
            raise RelationshipError(f"relationship {item.get('id')!r} has no customer tenant id")
        if not isinstance(status, str):
            raise RelationshipError(f"relationship {item.get('id')!r} has no status")
        roles = access.get("unifiedRoles") if isinstance(access, Mapping) else None
        if not isinstance(roles, list) or not all(isinstance(role, Mapping) and isinstance(
                role.get("roleDefinitionId"), str) for role in roles):
            raise RelationshipError(f"relationship {item.get('id')!r}: accessDetails.unifiedRoles is not a list of "
                                    "roleDefinitionId")
        end_text = item.get("endDateTime")
        end = parse_time_or_none(end_text) if end_text is not None else None
        if end_text is not None and end is None:
            raise RelationshipError(f"relationship {item.get('id')!r}: endDateTime {end_text!r} is not a date-time")
        return cls(id=str(item.get("id") or ""), name=str(item.get("displayName") or ""),
                   customer_id=customer["tenantId"].lower(), customer_name=str(customer.get("displayName") or ""),
                   status=status, roles=frozenset(role["roleDefinitionId"].lower() for role in roles), end=end,
                   auto_extend=str(item.get("autoExtendDuration") or "") not in NO_AUTO_EXTEND)


@dataclass(frozen=True)
class Customer:
    """One customer of the partner: its relationships and what they let authwatch's onboarding do."""

    tenant_id: str
    name: str
    relationships: tuple[Relationship, ...]
    watched: bool = False
    now: datetime | None = field(default=None, compare=False)

    @property
    def active(self) -> tuple[Relationship, ...]:
        return tuple(item for item in self.relationships if item.status == "active")

    @property
    def roles(self) -> frozenset[str]:
        return frozenset().union(*(item.roles for item in self.active)) if self.active else frozenset()

    @property
    def end(self) -> datetime | None:
        """When the last active relationship ends (None: none active, or no end date given)."""
        ends = [item.end for item in self.active if item.end is not None]
        return max(ends) if ends else None

    @property
    def auto_extends(self) -> bool:
        return any(item.auto_extend for item in self.active)

    @property
    def ended(self) -> bool:
        """Every relationship with this customer has ended (expired or terminated): no access any more."""
        return not self.active and any(item.status in ENDED for item in self.relationships)

    @property
    def ends_soon(self) -> bool:
        return (self.now is not None and self.end is not None and not self.auto_extends
                and self.end - self.now <= ENDS_SOON)

    @property
    def unknown_statuses(self) -> tuple[str, ...]:
        return tuple(sorted({item.status for item in self.relationships} - KNOWN_STATUSES))

    @property
    def missing_roles(self) -> tuple[str, ...]:
        """The roles onboarding needs that no active relationship grants (names), in Microsoft's words."""
        if not self.active:
            return ()
        return tuple(role_name(role) for role, any_of in NEEDED_ROLES if not self.roles & any_of)

    def to_json(self) -> dict[str, Any]:
        return {"tenantId": self.tenant_id, "name": self.name, "watched": self.watched,
                "relationships": [{"id": item.id, "name": item.name, "status": item.status,
                                   "roles": sorted(role_name(role) for role in item.roles),
                                   "endDateTime": format_time(item.end) if item.end else None,
                                   "autoExtend": item.auto_extend} for item in self.relationships],
                "roles": sorted(role_name(role) for role in self.roles),
                "end": format_time(self.end) if self.end else None, "endsSoon": self.ends_soon,
                "autoExtends": self.auto_extends, "ended": self.ended, "missingRoles": list(self.missing_roles),
                "unknownStatuses": list(self.unknown_statuses)}


def customers(relationships: Iterable[Mapping[str, Any]], watched: Iterable[str], *, now: datetime) -> list[Customer]:
    """Every customer the relationships name (active, pending or ended), sorted by name; `watched` the tenant ids
    authwatch already watches. Raises RelationshipError for a relationship it cannot read."""
    by_customer: dict[str, list[Relationship]] = {}
    for item in relationships:
        if item.get("status") in PENDING and not isinstance(item.get("customer"), Mapping):
            # An invitation not yet accepted: Graph fills `customer` "by the system after the customer approves"
            # (resources/delegatedadminrelationship). Nobody to onboard yet; not an unreadable relationship.
            continue
        relationship = Relationship.from_graph(item)
        by_customer.setdefault(relationship.customer_id, []).append(relationship)
    watched_ids = {tenant_id.lower() for tenant_id in watched}
    found = []
    for tenant_id, items in by_customer.items():
        items.sort(key=lambda item: (item.status != "active", item.name))
        name = next((item.customer_name for item in items if item.customer_name), tenant_id)
        found.append(Customer(tenant_id, name, tuple(items), watched=tenant_id in watched_ids, now=now))
    return sorted(found, key=lambda customer: (customer.name.lower(), customer.tenant_id))
