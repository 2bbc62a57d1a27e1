"""The MSP partner side of a scenario: the partner tenant, its operator and its GDAP relationships with customers.

``normalize_partner`` validates the top-level ``"partner"`` key (called by scenario.load_scenario, which passes in its
field checker so this module needs nothing from scenario.py); the helpers below answer, per request, what Microsoft
would look up: is a tenant the partner, which relationships are active with a customer, which Entra roles they give.

Relationship shape and statuses: https://learn.microsoft.com/en-us/graph/api/resources/delegatedadminrelationship
Role template ids: https://learn.microsoft.com/entra/identity/role-based-access-control/permissions-reference
"""
from __future__ import annotations

import copy
import re
from typing import Any, Callable

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Relationship ids are "<guid>-<guid>" in Microsoft's examples (tenantrelationship-list-delegatedadminrelationships).
RELATIONSHIP_ID = re.compile(r"^[0-9a-fA-F-]{36}-[0-9a-fA-F-]{36}$")

# Entra built-in role template ids (permissions-reference, cited above).
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
PRIVILEGED_ROLE_ADMINISTRATOR = "e8611ab8-c189-46e8-94e1-60213ab1f814"
CLOUD_APPLICATION_ADMINISTRATOR = "158c047a-c907-4556-b7ef-446551a6b5f7"
APPLICATION_ADMINISTRATOR = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"
GLOBAL_READER = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"
SECURITY_READER = "5d6b6bb7-de71-4623-b4af-96380a352509"
SECURITY_ADMINISTRATOR = "194ae4cb-b126-40b2-bd5b-6091b380977d"
EXCHANGE_ADMINISTRATOR = "29232cdf-9323-42fd-ade2-1d097af3e4de"
EXCHANGE_RECIPIENT_ADMINISTRATOR = "31392ffb-586c-42d1-9346-e59415a2cc4e"
COMPLIANCE_ADMINISTRATOR = "17315797-102d-40b4-93e0-432062caca18"
HELPDESK_ADMINISTRATOR = "729827e3-9c14-49f7-bb1b-9608f156bbb8"

#: Entra roles Exchange Online accepts for app-only access ("supported Microsoft Entra roles",
#: https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2): holding one sets `exchangeRole`.
EXCHANGE_APP_ONLY_ROLES = frozenset({
    COMPLIANCE_ADMINISTRATOR, EXCHANGE_ADMINISTRATOR, EXCHANGE_RECIPIENT_ADMINISTRATOR, GLOBAL_ADMINISTRATOR,
    GLOBAL_READER, HELPDESK_ADMINISTRATOR, SECURITY_ADMINISTRATOR, SECURITY_READER,
})
#: Roles a GDAP relationship needs for Partner Center's application consent: "A GDAP relationship approved by the
#: customer that has one of the following roles: - Global admin - Privileged role admin - Cloud application admin"
#: (https://learn.microsoft.com/en-us/powershell/partnercenter/exchange-online-gdap-app).
CONSENT_ROLES = frozenset({GLOBAL_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR, CLOUD_APPLICATION_ADMINISTRATOR})

STATUSES = ("activating", "active", "approvalPending", "approved", "created", "expired", "expiring", "terminated",
            "terminating", "terminationRequested")
AUTO_EXTEND = ("P0D", "PT0S", "P180D")  # "Supported values are: P0D, PT0S, P180D" (delegatedadminrelationship)
SIGN_IN_OUTCOMES = ("approve", "decline", "expire")

PARTNER_KEYS = {"tenantId", "displayName", "operator", "delegatedScopes", "relationships", "faults"}
OPERATOR_KEYS = {"userPrincipalName", "objectId", "displayName", "signIn"}
RELATIONSHIP_KEYS = {"id", "displayName", "customerTenantId", "status", "roles", "duration", "activatedDateTime",
                     "endDateTime", "autoExtendDuration", "createdDateTime", "lastModifiedDateTime"}
PARTNER_FAULT_KEYS = ("partnerCenter.consent", "graph.delegatedAdminRelationships", "graph.delegatedAdminCustomers",
                      "token")
_DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?$")


def _duration_days(text: str) -> int | None:
    m = _DURATION.match(text)
    if not m or not any(m.groups()):
        return None
    years, months, days = (int(g or 0) for g in m.groups())
    return years * 365 + months * 30 + days


def normalize_partner(c: Any, raw: Any, tenants: list[dict[str, Any]], app: dict[str, Any] | None,
                      check_fault: Callable[[Any, str, Any], None],
                      check_date: Callable[[Any, str, Any], None]) -> dict[str, Any] | None:
    """Validate ``scenario["partner"]`` and return a normalised copy (None when absent). ``c`` is scenario's field
    checker (fail/typ/keys), ``check_fault``/``check_date`` its fault and date checks: errors name the field."""
    if raw is None:
        return None
    c.typ("partner", raw, dict, "an object {tenantId, displayName, operator, delegatedScopes, relationships, faults}")
    c.keys("partner", raw, PARTNER_KEYS)
    if app is None:
        c.fail("partner", "needs the scenario's top-level 'app' (the multi-tenant app the operator signs in to)")
    tid = raw.get("tenantId")
    if not isinstance(tid, str) or not GUID.match(tid):
        c.fail("partner.tenantId", f"required GUID, got {tid!r}"[:120])
    out: dict[str, Any] = {"tenantId": tid.lower(), "displayName": raw.get("displayName") or "Partner"}
    c.typ("partner.displayName", out["displayName"], str, "a string")

    op = raw.get("operator")
    c.typ("partner.operator", op, dict, "an object {userPrincipalName, objectId, signIn}")
    c.keys("partner.operator", op, OPERATOR_KEYS)
    upn = op.get("userPrincipalName")
    if not isinstance(upn, str) or upn.count("@") != 1 or not upn.split("@")[1]:
        c.fail("partner.operator.userPrincipalName", f"required user@domain, got {upn!r}"[:120])
    oid = op.get("objectId")
    if not isinstance(oid, str) or not GUID.match(oid):
        c.fail("partner.operator.objectId", f"required GUID, got {oid!r}"[:120])
    sign_in = op.get("signIn", "approve")
    if sign_in not in SIGN_IN_OUTCOMES:
        c.fail("partner.operator.signIn", f"one of {', '.join(SIGN_IN_OUTCOMES)}, got {sign_in!r}"[:120])
    name = op.get("displayName", upn.split("@")[0])
    c.typ("partner.operator.displayName", name, str, "a string")
    out["operator"] = {"userPrincipalName": upn, "objectId": oid.lower(), "displayName": name, "signIn": sign_in}

    scopes = raw.get("delegatedScopes", ["DelegatedAdminRelationship.Read.All"])
    c.typ("partner.delegatedScopes", scopes, list, "a list of Graph delegated scope names")
    for i, s in enumerate(scopes):
        if not isinstance(s, str) or not s or " " in s or "/" in s:
            c.fail(f"partner.delegatedScopes[{i}]", f"a scope name such as 'DelegatedAdminRelationship.Read.All', "
                                                   f"got {s!r}"[:120])
    out["delegatedScopes"] = list(scopes)

    # The partner tenant need not be a scenario tenant; when it is (the MSP watches itself) it is also an ordinary one.
    by_id = {t["tenantId"]: t for t in tenants}
    rels = raw.get("relationships", [])
    c.typ("partner.relationships", rels, list, "a list of relationship objects")
    out["relationships"] = []
    seen_ids: set[str] = set()
    seen_names: set[str] = set()
    for i, rel in enumerate(rels):
        out["relationships"].append(_relationship(c, f"partner.relationships[{i}]", rel, by_id, out["tenantId"],
                                                  check_date, seen_ids, seen_names))

    faults = raw.get("faults", {})
    c.typ("partner.faults", faults, dict, "an object keyed by tenant id")
    out["faults"] = {}
    for ftid, per in faults.items():
        where = f"partner.faults.{ftid}"
        if not GUID.match(ftid) or (ftid.lower() not in by_id and ftid.lower() != out["tenantId"]):
            c.fail(where, "must be the partner's or a scenario tenant's id")
        c.typ(where, per, dict, "an object keyed by endpoint key")
        for key, fault in per.items():
            if key not in PARTNER_FAULT_KEYS:
                c.fail(f"{where}.{key}", f"unknown endpoint key (use one of {', '.join(PARTNER_FAULT_KEYS)})")
            check_fault(c, f"{where}.{key}", fault)
        out["faults"][ftid.lower()] = copy.deepcopy(per)
    return out


def _relationship(c: Any, where: str, rel: Any, by_id: dict[str, dict[str, Any]], partner_tid: str,
                  check_date: Callable[[Any, str, Any], None], seen_ids: set[str],
                  seen_names: set[str]) -> dict[str, Any]:
    c.typ(where, rel, dict, "a relationship object")
    c.keys(where, rel, RELATIONSHIP_KEYS)
    rid = rel.get("id")
    if not isinstance(rid, str) or not RELATIONSHIP_ID.match(rid):
        c.fail(f"{where}.id", f"required '<guid>-<guid>' (Microsoft's relationship id format), got {rid!r}"[:140])
    if rid.lower() in seen_ids:
        c.fail(f"{where}.id", f"duplicate relationship {rid}")
    seen_ids.add(rid.lower())
    name = rel.get("displayName")
    # "Must be unique across all delegated admin relationships of the partner" (max 50 characters).
    if not isinstance(name, str) or not name or len(name) > 50:
        c.fail(f"{where}.displayName", f"required string of 1..50 characters, got {name!r}"[:120])
    if name.lower() in seen_names:
        c.fail(f"{where}.displayName", f"must be unique across the partner's relationships: {name!r} repeats")
    seen_names.add(name.lower())
    ctid = rel.get("customerTenantId")
    if not isinstance(ctid, str) or not GUID.match(ctid):
        c.fail(f"{where}.customerTenantId", f"required GUID, got {ctid!r}"[:120])
    if ctid.lower() not in by_id:
        c.fail(f"{where}.customerTenantId", f"{ctid} is not a scenario tenant (add it to 'tenants')")
    if ctid.lower() == partner_tid:
        c.fail(f"{where}.customerTenantId", "a partner has no relationship with itself")
    status = rel.get("status")
    if status not in STATUSES:
        c.fail(f"{where}.status", f"one of {', '.join(STATUSES)}, got {status!r}"[:160])
    roles = rel.get("roles")
    c.typ(f"{where}.roles", roles, list, "a list of role definition ids (GUIDs)")
    for j, role in enumerate(roles):
        if not isinstance(role, str) or not GUID.match(role):
            c.fail(f"{where}.roles[{j}]", f"required role template GUID, got {role!r}"[:120])
    duration = rel.get("duration", "P730D")
    days = _duration_days(duration) if isinstance(duration, str) else None
    # "Must be a value between P1D and P2Y inclusive."
    if days is None or not 1 <= days <= 730:
        c.fail(f"{where}.duration", f"an ISO 8601 duration between P1D and P2Y, got {duration!r}"[:120])
    auto = rel.get("autoExtendDuration", "PT0S")
    if auto not in AUTO_EXTEND:
        c.fail(f"{where}.autoExtendDuration", f"one of {', '.join(AUTO_EXTEND)}, got {auto!r}"[:120])
    dates: dict[str, Any] = {}
    for field in ("activatedDateTime", "endDateTime"):
        value = rel.get(field)
        # Microsoft's list example shows null dates on a relationship that is not active yet (approvalPending).
        if value is None and status != "active":
            dates[field] = None
            continue
        check_date(c, f"{where}.{field}", value)
        dates[field] = value
    created = rel.get("createdDateTime", dates["activatedDateTime"] or "2024-01-01T00:00:00Z")
    check_date(c, f"{where}.createdDateTime", created)
    modified = rel.get("lastModifiedDateTime", dates["activatedDateTime"] or created)
    check_date(c, f"{where}.lastModifiedDateTime", modified)
    return {"id": rid.lower(), "displayName": name, "customerTenantId": ctid.lower(), "status": status,
            "roles": [r.lower() for r in roles], "duration": duration, "autoExtendDuration": auto,
            "createdDateTime": created, "lastModifiedDateTime": modified, **dates}


# -- look-ups (callers hold the state lock) -------------------------------------------------------------------------
def partner_of(scenario: dict[str, Any]) -> dict[str, Any] | None:
    return scenario.get("partner")


def is_partner_ref(partner: dict[str, Any] | None, tenant_ref: str) -> bool:
    """The partner tenant by id, by the operator's domain, or Entra's multi-tenant aliases (the operator's home)."""
    if partner is None:
        return False
    ref = tenant_ref.lower()
    domain = partner["operator"]["userPrincipalName"].split("@")[1].lower()
    return ref in (partner["tenantId"], domain, "organizations", "common")


def active_relationships(partner: dict[str, Any] | None, customer_tid: str) -> list[dict[str, Any]]:
    if partner is None:
        return []
    return [r for r in partner["relationships"]
            if r["customerTenantId"] == customer_tid.lower() and r["status"] == "active"]


def effective_roles(partner: dict[str, Any] | None, customer_tid: str) -> set[str]:
    """The operator's Entra roles in a customer tenant: the union of the roles of ACTIVE relationships with it.
    (GDAP roles reach a partner user through the relationship's access assignments; the simulator assumes the
    operator is in every assigned group.)"""
    roles: set[str] = set()
    for rel in active_relationships(partner, customer_tid):
        roles.update(rel["roles"])
    return roles
