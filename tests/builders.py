"""Plain-data builders for snapshots and Microsoft objects, shared by the unit tests."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

from shared.model import TenantSnapshot, snapshot_from_json

TENANT = "8c1d0f4e-1a2b-4c3d-8e9f-00000000abcd"
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


def block_policy(policy_id: str = "11111111-1111-1111-1111-111111111111", *,
                 client_app_types: list[str] | None = None, **changes: Any) -> dict[str, Any]:
    """An enabled policy that blocks legacy clients for all users and apps; `changes` patch it (dotted keys)."""
    policy: dict[str, Any] = {
        "id": policy_id,
        "displayName": f"Block legacy auth {policy_id[:4]}",
        "createdDateTime": "2024-03-01T10:00:00Z",
        "modifiedDateTime": "2025-11-02T08:15:00Z",
        "state": "enabled",
        "conditions": {
            "userRiskLevels": [], "signInRiskLevels": [], "servicePrincipalRiskLevels": [], "insiderRiskLevels": None,
            "clientAppTypes": client_app_types or ["exchangeActiveSync", "other"],
            "platforms": None, "devices": None, "locations": None, "clientApplications": None,
            "authenticationFlows": None,
            "applications": {"includeApplications": ["All"], "excludeApplications": [], "includeUserActions": [],
                             "includeAuthenticationContextClassReferences": [], "applicationFilter": None},
            "users": {"includeUsers": ["All"], "excludeUsers": [], "includeGroups": [], "excludeGroups": [],
                      "includeRoles": [], "excludeRoles": [], "includeGuestsOrExternalUsers": None,
                      "excludeGuestsOrExternalUsers": None},
        },
        "grantControls": {"operator": "OR", "builtInControls": ["block"]},
    }
    for dotted, value in changes.items():
        target = policy
        *path, last = dotted.split(".")
        for key in path:
            target = target.setdefault(key, {})
        target[last] = value
    return policy


def snapshot_json(*, policies: list[dict[str, Any]] | None = None, security_defaults: Any = False,
                  transport: Any = True, settings: dict[str, Any] | None = None,
                  errors: dict[str, Any] | None = None, drop: tuple[str, ...] = (),
                  graph_sources: dict[str, Any] | None = None, exchange_sources: dict[str, Any] | None = None,
                  collected_at: str = "2026-11-23T08:00:00Z", **extra: Any) -> dict[str, Any]:
    """A whole snapshot document. `graph_sources` / `exchange_sources` add or replace sources by snapshot name
    (e.g. exchange_sources={"casMailboxes": [...]}); `drop` removes sources ("graph.signIns")."""
    graph: dict[str, Any] = {
        "organization": {"id": TENANT, "displayName": "Contoso"},
        "securityDefaults": {"id": "00000000-0000-0000-0000-000000000005", "isEnabled": security_defaults},
        "conditionalAccessPolicies": copy.deepcopy(policies) if policies is not None else [],
    }
    exchange: dict[str, Any] = {
        "transportConfig": {"Identity": "Transport Settings", "SmtpClientAuthenticationDisabled": transport},
    }
    graph.update(copy.deepcopy(graph_sources or {}))
    exchange.update(copy.deepcopy(exchange_sources or {}))
    for source in drop:
        section, _, name = source.partition(".")
        (graph if section == "graph" else exchange).pop(name, None)
    document = {
        "schemaVersion": 1,
        "tenantId": TENANT,
        "collectedAt": collected_at,
        "settings": settings or {},
        "graph": graph,
        "exchange": exchange,
        "errors": errors or {},
    }
    document.update(extra)
    return document


def snapshot(**kwargs: Any) -> TenantSnapshot:
    return snapshot_from_json(snapshot_json(**kwargs))
