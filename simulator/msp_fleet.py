"""The MSP story behind the demo and the onboarding tests: a partner tenant ("Fabrikam MSP") whose operator discovers
12 customers through GDAP, onboards 10, and finds two that need a fix.

* customers 1-10: an active relationship with Cloud Application Administrator + Privileged Role Administrator +
  Global Reader — everything onboarding needs; customer 3's ends in 20 days and does not auto-extend (PT0S):
  "expiring soon".
* customer 11 (LACKS_ROLE_ID): its relationship lacks Privileged Role Administrator — Partner Center's consent works
  (Cloud Application Administrator suffices), Exchange.ManageAsApp too, but Microsoft Graph app roles and the
  Global Reader assignment are refused: "relationship lacks role Privileged Role Administrator".
* customer 12 (MISSING_EXCHANGE_ROLE_ID): "consented but missing the Exchange role" — see _missing_exchange_role.
* TERMINATED_ID: a former customer; its only relationship is terminated, so relationships list it and
  delegatedAdminCustomers does not.

Every customer is an ordinary demo tenant (some pass the controls, some fail them), not yet onboarded:
``consent: false`` (no service principal) and no Exchange role. Ids are fixed (uuid5), so the demo, the tests and the
docs name the same tenants; dates are relative to ``now`` (default: today, midnight UTC) so "ends in 20 days" stays true.
"""
from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from simulator.demo_fleet import APP, BLOCK_POLICY, _policy, _tenant
from simulator.partner import (CLOUD_APPLICATION_ADMINISTRATOR, GLOBAL_READER, PRIVILEGED_ROLE_ADMINISTRATOR)

_NS = uuid.uuid5(uuid.NAMESPACE_URL, "https://authwatch.example/msp-fleet")


def _id(name: str) -> str:
    return str(uuid.uuid5(_NS, name))


PARTNER_TENANT_ID = _id("partner")
PARTNER_NAME = "Fabrikam MSP"
OPERATOR_UPN = "ops@fabrikammsp.onmicrosoft.com"
OPERATOR_ID = _id("operator")
#: (name, domain) of the 12 active customers, then the former one.
CUSTOMERS = [
    ("Alpine Ski House", "alpineskihouse.example"), ("Bellows College", "bellows.example"),
    ("Coho Winery", "cohowinery.example"), ("Consolidated Messenger", "consolidatedmessenger.example"),
    ("Fourth Coffee", "fourthcoffee.example"), ("Graphic Design Institute", "graphicdesign.example"),
    ("Humongous Insurance", "humongous.example"), ("Lamna Healthcare", "lamna.example"),
    ("Margie's Travel", "margiestravel.example"), ("Relecloud", "relecloud.example"),
    ("Wide World Importers", "wideworldimporters.example"), ("Woodgrove Pharmacy", "woodgrovepharmacy.example"),
]
FORMER = ("Trey Research", "treyresearch.example")
CUSTOMER_IDS = [_id(f"customer:{name}") for name, _ in CUSTOMERS]
TERMINATED_ID = _id(f"customer:{FORMER[0]}")
EXPIRING_ID = CUSTOMER_IDS[2]
LACKS_ROLE_ID = CUSTOMER_IDS[10]
MISSING_EXCHANGE_ROLE_ID = CUSTOMER_IDS[11]
FULL_ROLES = [CLOUD_APPLICATION_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR, GLOBAL_READER]


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _relationship(customer: str, name: str, roles: list[str], now: datetime, *, status: str = "active",
                  ends_in_days: int | None = None, auto_extend: str = "P180D") -> dict[str, Any]:
    activated = now - timedelta(days=120)
    end = now + timedelta(days=ends_in_days) if ends_in_days is not None else activated + timedelta(days=730)
    if status == "terminated":
        activated, end = now - timedelta(days=400), now - timedelta(days=35)
    return {"id": f"{_id('relationship:' + customer)}-{customer}", "displayName": f"authwatch-{name[:30]}",
            "customerTenantId": customer, "status": status, "roles": list(roles),
            "duration": "P730D" if ends_in_days is None else f"P{(end - activated).days}D",
            "activatedDateTime": _stamp(activated), "endDateTime": _stamp(end), "autoExtendDuration": auto_extend,
            "createdDateTime": _stamp(activated - timedelta(days=2)), "lastModifiedDateTime": _stamp(activated)}


def _customer(index: int, name: str, domain: str, tid: str) -> dict[str, Any]:
    """An ordinary demo tenant, not onboarded yet; every third one fails the legacy-auth controls."""
    failing = index % 3 == 1
    tenant = _tenant(tid, name, "MSP customer: legacy auth open (no block policy, SMTP AUTH on)" if failing
                     else "MSP customer: legacy auth blocked",
                     policies=[] if failing else [copy.deepcopy(BLOCK_POLICY)],
                     smtp_auth_disabled="False" if failing else True, domain=domain,
                     consent=False, exchangeRole=False)
    if index % 4 == 3:
        tenant["graph"]["conditionalAccessPolicies"] = [_policy(state="enabledForReportingButNotEnforced")]
    return tenant


def _missing_exchange_role(tenant: dict[str, Any]) -> None:
    """Customer 12's relationship LISTS Privileged Role Administrator, but GDAP gives a relationship's roles to the
    partner's security groups through access assignments (…/delegatedAdminRelationships/{id}/accessAssignments,
    research20 §2 and §6) and the operator's group was never given that role here. Graph therefore refuses the
    directory role write with 403 while the relationship looks complete — played as a fault on the POST only (the
    read-back GET still works): consent and app roles succeed, the Exchange role does not."""
    tenant["faults"]["graph.roleAssignments"] = {
        "status": 403, "method": "POST",
        "body": {"error": {"code": "Authorization_RequestDenied",
                           "message": "Insufficient privileges to complete the operation."}}}


def msp_scenario(now: datetime | None = None) -> dict[str, Any]:
    """A fresh copy of the MSP scenario (callers may mutate it)."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(hour=0, minute=0, second=0,
                                                                               microsecond=0)
    tenants, relationships = [], []
    for index, ((name, domain), tid) in enumerate(zip(CUSTOMERS, CUSTOMER_IDS)):
        tenant = _customer(index, name, domain, tid)
        tenant.setdefault("faults", {})
        if tid == LACKS_ROLE_ID:
            roles = [CLOUD_APPLICATION_ADMINISTRATOR, GLOBAL_READER]
        elif tid == MISSING_EXCHANGE_ROLE_ID:
            roles = [CLOUD_APPLICATION_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR]
            _missing_exchange_role(tenant)
        else:
            roles = FULL_ROLES
        expiring = tid == EXPIRING_ID
        relationships.append(_relationship(tid, name, roles, now, ends_in_days=20 if expiring else None,
                                           auto_extend="PT0S" if expiring else "P180D"))
        tenants.append(tenant)
    former = _customer(len(CUSTOMERS), FORMER[0], FORMER[1], TERMINATED_ID)
    tenants.append(former)
    relationships.append(_relationship(TERMINATED_ID, FORMER[0], FULL_ROLES, now, status="terminated",
                                       auto_extend="PT0S"))
    partner = {"tenantId": PARTNER_TENANT_ID, "displayName": PARTNER_NAME,
               "operator": {"userPrincipalName": OPERATOR_UPN, "objectId": OPERATOR_ID, "displayName": "MSP Operations",
                            "signIn": "approve"},
               "delegatedScopes": ["DelegatedAdminRelationship.Read.All"],
               "relationships": relationships, "faults": {}}
    return {"app": dict(APP), "tenants": tenants, "partner": partner}
