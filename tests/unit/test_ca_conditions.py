"""Every Conditional Access condition judged, fail-closed (controls.md §1): the classification table matches what
Graph (the installed msgraph-sdk's generated models) can send, narrowed blocks never PASS, an unknown condition
names itself, and narrowing a working block is a drift.weakened with before → after."""

from __future__ import annotations

import importlib
import json
from datetime import datetime, timedelta, timezone

import pytest

from shared.cli import main
from shared.cli.replay import replay
from shared.controls.ca_conditions import CONDITIONS, SECTIONS
from shared.controls.entra_legacy_auth_blocked import check
from tests.builders import block_policy, snapshot, snapshot_json
from tests.unit.test_replay_scenarios import POLICY_ID, snap

# Graph's condition types, as msgraph-sdk generates them: (prefix in the table, module, class).
MODELS = [
    ("", "conditional_access_condition_set", "ConditionalAccessConditionSet"),
    ("users.", "conditional_access_users", "ConditionalAccessUsers"),
    ("applications.", "conditional_access_applications", "ConditionalAccessApplications"),
    ("clientApplications.", "conditional_access_client_applications", "ConditionalAccessClientApplications"),
    ("devices.", "conditional_access_devices", "ConditionalAccessDevices"),
    ("locations.", "conditional_access_locations", "ConditionalAccessLocations"),
    ("platforms.", "conditional_access_platforms", "ConditionalAccessPlatforms"),
    ("authenticationFlows.", "conditional_access_authentication_flows", "ConditionalAccessAuthenticationFlows"),
]

# Microsoft's recommended "Block device code flow" policy: client apps all, block, but only for that flow.
# https://learn.microsoft.com/en-us/entra/identity/conditional-access/policy-block-authentication-flows
DEVICE_CODE = {"conditions.clientAppTypes": ["all"],
               "conditions.authenticationFlows": {"transferMethods": "deviceCodeFlow"}}
INSIDER = {"conditions.insiderRiskLevels": "elevated"}  # a flags string, as Graph sends it
APP_FILTER = {"conditions.applications": {
    "includeApplications": ["All"], "excludeApplications": [],
    "applicationFilter": {"mode": "exclude", "rule": 'CustomSecurityAttribute.Legacy -eq "Allowed"'}}}


def graph_properties(module: str, cls: str) -> set[str]:
    model = getattr(importlib.import_module(f"msgraph.generated.models.{module}"), cls)
    return set(model().get_field_deserializers()) - {"@odata.type"}


@pytest.mark.parametrize("prefix,module,cls", MODELS)
def test_every_property_graph_can_send_is_classified(prefix, module, cls):
    graph = graph_properties(module, cls)
    if prefix:
        table = {path[len(prefix):] for path in CONDITIONS if path.startswith(prefix)}
    else:
        table = {path for path in CONDITIONS if "." not in path} | set(SECTIONS)
    assert graph - table == set(), f"classify these in shared/controls/ca_conditions.py: {sorted(graph - table)}"
    assert table - graph == set(), f"Graph no longer has: {sorted(table - graph)}"


@pytest.mark.parametrize("changes,named", [
    (DEVICE_CODE, "conditions.authenticationFlows.transferMethods: deviceCodeFlow"),
    (INSIDER, "insiderRiskLevels elevated"),
    (APP_FILTER, "conditions.applications.applicationFilter: exclude CustomSecurityAttribute"),
    ({"conditions.applications": {"includeApplications": ["All"], "includeUserActions": ["urn:user:registersecurityinfo"]}},
     "targets user actions"),
    ({"conditions.applications": {"includeApplications": ["All"], "includeAuthenticationContextClassReferences": ["c1"]}},
     "targets authentication contexts"),
    ({"conditions.clientApplications": {"includeServicePrincipals": ["ServicePrincipalsInMyTenant"]}},
     "targets workload identities"),
    ({"conditions.signInRiskLevels": "high"}, "signInRiskLevels high"),
])
def test_a_narrowed_block_fails_and_names_the_condition(changes, named):
    result = check(snapshot(policies=[block_policy(**changes)]))
    assert result.status == "fail"
    assert named in result.summary
    [policy] = result.evidence["candidates"] if "candidates" in result.evidence else [
        p for p in result.evidence.get("policies", []) if p["id"] == block_policy()["id"]]
    assert any(named.split(":")[0].split(" ")[0] in reason for reason in policy["disqualifiedBecause"])


def test_an_unknown_condition_disqualifies_the_policy_and_is_named():
    result = check(snapshot(policies=[block_policy(**{"conditions.agentRiskLevels": "high",
                                                       "conditions.users.excludeAgents": ["a1"]})]))
    assert result.status == "fail"
    assert "conditions.agentRiskLevels" in result.summary and "does not know" in result.summary
    assert "conditions.users.excludeAgents" in result.summary


def test_a_condition_section_of_the_wrong_type_disqualifies():
    result = check(snapshot(policies=[block_policy(**{"conditions.platforms": "all"})]))
    assert result.status == "fail" and "conditions.platforms that is not an object" in result.summary


def test_empty_and_neutral_conditions_still_pass():
    policy = block_policy(**{"conditions.authenticationFlows": {"transferMethods": None},
                             "conditions.insiderRiskLevels": "", "conditions.clientApplications": None,
                             "conditions.applications": {"includeApplications": ["All"], "includeUserActions": [],
                                                         "includeAuthenticationContextClassReferences": [],
                                                         "applicationFilter": None},
                             "conditions.users.includeGroups": ["g1"]})
    policy["conditions"]["@odata.type"] = "#microsoft.graph.conditionalAccessConditionSet"
    assert check(snapshot(policies=[policy])).status == "pass"


def test_client_apps_all_covers_both_legacy_client_types():
    assert check(snapshot(policies=[block_policy(client_app_types=["all"])])).status == "pass"


@pytest.mark.parametrize("changes", [DEVICE_CODE, APP_FILTER, {"conditions.authenticationFlows": {"transferMethods": "authenticationTransfer"}}])
def test_evaluate_on_a_narrowed_block_prints_fail_naming_the_condition(tmp_path, capsys, changes):
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(snapshot_json(policies=[block_policy(**changes)])))
    assert main(["evaluate", "--snapshot", str(path), "--format", "json"]) == 0
    [result] = [r for r in json.loads(capsys.readouterr().out)["results"] if r["control"] == "entra_legacy_auth_blocked"]
    assert result["status"] == "fail" and "conditions." in result["summary"]


@pytest.mark.parametrize("changes,field", [
    (DEVICE_CODE, "authenticationFlows.transferMethods = deviceCodeFlow"),
    (APP_FILTER, "applications.applicationFilter = exclude"),
    ({"conditions.agentRiskLevels": "high"}, "agentRiskLevels = high"),
])
def test_narrowing_a_working_block_is_a_drift_weakened_with_before_and_after(changes, field):
    narrowed = block_policy(POLICY_ID, modifiedDateTime="2025-01-01T00:00:00Z", **changes)
    events = replay([snap(0), snap(1, policies=[narrowed])])
    [weakened] = [e for e in events if e.type == "drift.weakened"]
    [change] = [c for c in weakened.details["changes"] if c["field"] == "narrowedBy"]
    assert change["before"] is None and any(item.startswith(field) for item in change["after"])
    assert "now applies only when" in change["note"]


def test_insider_risk_as_graph_sends_it_is_drift_too():
    narrowed = block_policy(POLICY_ID, modifiedDateTime="2025-01-01T00:00:00Z", **INSIDER)
    events = replay([snap(0), snap(1, policies=[narrowed])])
    [weakened] = [e for e in events if e.type == "drift.weakened"]
    [change] = [c for c in weakened.details["changes"] if c["field"] == "riskLevels"]
    assert change["after"] == ["insiderRiskLevels:elevated"]


def test_an_unknown_condition_inside_a_known_section_is_drift_too():
    narrowed = block_policy(POLICY_ID, modifiedDateTime="2025-01-01T00:00:00Z",
                            **{"conditions.platforms": {"includePlatforms": ["all"], "excludePlatforms": [],
                                                        "includeDeviceModels": ["kiosk"]}})
    events = replay([snap(0), snap(1, policies=[narrowed])])
    [weakened] = [e for e in events if e.type == "drift.weakened"]
    [change] = [c for c in weakened.details["changes"] if c["field"] == "narrowedBy"]
    assert change["after"] == ["platforms.includeDeviceModels = kiosk"]
