"""The MSP fleet (simulator/msp_fleet.py) tells the story the demo and the onboarding tests rely on."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from simulator import load_scenario
from simulator.msp_fleet import (CUSTOMER_IDS, EXPIRING_ID, LACKS_ROLE_ID, MISSING_EXCHANGE_ROLE_ID,
                                 PARTNER_TENANT_ID, TERMINATED_ID, msp_scenario)
from simulator.partner import PRIVILEGED_ROLE_ADMINISTRATOR, active_relationships

NOW = datetime(2026, 12, 6, 15, 30, tzinfo=timezone.utc)


def test_twelve_customers_one_former_none_onboarded() -> None:
    sc = load_scenario(msp_scenario(NOW))
    partner = sc["partner"]
    assert partner["tenantId"] == PARTNER_TENANT_ID and PARTNER_TENANT_ID not in {t["tenantId"] for t in sc["tenants"]}
    assert len(CUSTOMER_IDS) == len(set(CUSTOMER_IDS)) == 12 and TERMINATED_ID not in CUSTOMER_IDS
    assert all(active_relationships(partner, tid) for tid in CUSTOMER_IDS)
    assert not active_relationships(partner, TERMINATED_ID)
    assert all(t["consent"] is False and t["exchangeRole"] is False for t in sc["tenants"])


def test_the_two_that_need_a_fix_and_the_expiring_one() -> None:
    partner = load_scenario(msp_scenario(NOW))["partner"]
    rel = {r["customerTenantId"]: r for r in partner["relationships"]}
    assert PRIVILEGED_ROLE_ADMINISTRATOR not in rel[LACKS_ROLE_ID]["roles"]
    assert PRIVILEGED_ROLE_ADMINISTRATOR in rel[MISSING_EXCHANGE_ROLE_ID]["roles"]
    assert rel[EXPIRING_ID]["autoExtendDuration"] == "PT0S"
    assert rel[EXPIRING_ID]["endDateTime"] == (NOW.replace(hour=0, minute=0) + timedelta(days=20)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    fault = next(t for t in load_scenario(msp_scenario(NOW))["tenants"]
                 if t["tenantId"] == MISSING_EXCHANGE_ROLE_ID)["faults"]["graph.roleAssignments"]
    assert (fault["status"], fault["method"]) == (403, "POST")


def test_the_scenario_is_deterministic() -> None:
    assert msp_scenario(NOW) == msp_scenario(NOW)
