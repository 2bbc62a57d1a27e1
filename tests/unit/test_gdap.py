"""An MSP's customers from Graph's delegatedAdminRelationship JSON (shared/tenants/gdap.py): plain data, no HTTP."""

from datetime import datetime, timedelta, timezone

import pytest

from shared.tenants.gdap import (
    CLOUD_APPLICATION_ADMINISTRATOR,
    GLOBAL_ADMINISTRATOR,
    GLOBAL_READER,
    PRIVILEGED_ROLE_ADMINISTRATOR,
    RelationshipError,
    customers,
)

NOW = datetime(2026, 12, 6, 12, tzinfo=timezone.utc)
A, B, C = ("1c0fa218-5dec-49db-8247-cfa457af8116", "4fdbff88-9d6b-42e0-9713-45c922ba8001",
           "52eaad04-13a2-4a2f-9ce8-93a294fadf36")


def relationship(customer: str, name: str, *, status: str = "active", roles=(PRIVILEGED_ROLE_ADMINISTRATOR,),
                 ends: timedelta | None = timedelta(days=400), auto: str = "PT0S", rid: str = "r1") -> dict:
    # Microsoft's example shape: https://learn.microsoft.com/graph/api/tenantrelationship-list-delegatedadminrelationships
    return {"@odata.type": "#microsoft.graph.delegatedAdminRelationship", "id": f"{rid}-{customer}",
            "displayName": f"authwatch-{name}", "duration": "P730D",
            "customer": {"tenantId": customer.upper(), "displayName": name},
            "accessDetails": {"unifiedRoles": [{"roleDefinitionId": role} for role in roles]},
            "status": status, "autoExtendDuration": auto,
            "endDateTime": (NOW + ends).isoformat().replace("+00:00", "Z") if ends is not None else None,
            "activatedDateTime": None if status != "active" else "2025-01-01T00:00:00Z"}


def test_a_customer_is_the_union_of_its_active_relationships() -> None:
    found = customers([relationship(A, "Contoso", roles=(CLOUD_APPLICATION_ADMINISTRATOR,), rid="r1"),
                       relationship(A, "Contoso", roles=(PRIVILEGED_ROLE_ADMINISTRATOR,), rid="r2",
                                    ends=timedelta(days=700)),
                       relationship(A, "Contoso", roles=(GLOBAL_ADMINISTRATOR,), status="terminated", rid="r3")],
                      [], now=NOW)
    [contoso] = found
    assert contoso.tenant_id == A  # lower-cased: the registry's key form
    assert contoso.roles == {CLOUD_APPLICATION_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR}  # not the terminated GA
    assert contoso.end == NOW + timedelta(days=700)
    assert contoso.missing_roles == () and not contoso.ended and not contoso.ends_soon


def test_missing_role_ends_soon_ended_and_watched_are_told_apart() -> None:
    found = {customer.name: customer for customer in customers([
        relationship(A, "Alpha", roles=(CLOUD_APPLICATION_ADMINISTRATOR, GLOBAL_READER)),
        relationship(B, "Beta", ends=timedelta(days=20)),
        relationship(C, "Gamma", status="terminated", ends=timedelta(days=-3)),
    ], [C], now=NOW)}
    assert found["Alpha"].missing_roles == ("Privileged Role Administrator",)
    assert found["Beta"].ends_soon and found["Beta"].to_json()["endsSoon"] is True
    assert found["Gamma"].ended and found["Gamma"].watched and not found["Gamma"].active
    assert [customer.name for customer in customers([relationship(B, "beta"), relationship(A, "Alpha")], [],
                                                    now=NOW)] == ["Alpha", "beta"]


def test_an_auto_extending_relationship_does_not_end_soon() -> None:
    [customer] = customers([relationship(A, "Alpha", ends=timedelta(days=5), auto="P180D")], [], now=NOW)
    assert customer.auto_extends and not customer.ends_soon


def test_a_relationship_it_cannot_read_is_a_named_error_not_a_guess() -> None:
    broken = relationship(A, "Alpha")
    broken["accessDetails"] = {"unifiedRoles": "Privileged Role Administrator"}
    with pytest.raises(RelationshipError, match="unifiedRoles"):
        customers([broken], [], now=NOW)
    no_customer = relationship(A, "Alpha")
    del no_customer["customer"]
    with pytest.raises(RelationshipError, match="customer tenant id"):
        customers([no_customer], [], now=NOW)
    bad_date = relationship(A, "Alpha")
    bad_date["endDateTime"] = "soon"
    with pytest.raises(RelationshipError, match="endDateTime"):
        customers([bad_date], [], now=NOW)


def test_an_unknown_status_is_shown_and_never_counts_as_active() -> None:
    [customer] = customers([relationship(A, "Alpha", status="unknownFutureValue")], [], now=NOW)
    assert customer.unknown_statuses == ("unknownFutureValue",)
    assert not customer.active and customer.missing_roles == () and not customer.ended


def test_an_invitation_not_yet_accepted_has_no_customer_and_is_left_out() -> None:
    # Graph fills `customer` "by the system after the customer approves" (resources/delegatedadminrelationship).
    invitation = relationship(A, "Alpha", status="approvalPending", ends=None)
    invitation["customer"] = None
    [customer] = customers([invitation, relationship(B, "Beta")], [], now=NOW)
    assert customer.tenant_id == B
    active_without_customer = relationship(A, "Alpha")
    active_without_customer["customer"] = None
    with pytest.raises(RelationshipError):  # an active relationship must name its customer: fail closed
        customers([active_without_customer], [], now=NOW)
