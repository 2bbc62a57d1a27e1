"""Evaluation never raises on odd input: random and malformed fragments in every source still give one
well-formed result per control (property-based, hypothesis)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.controls import controls
from shared.controls.evaluate import evaluate
from shared.model import EXCHANGE_SOURCES, GRAPH_SOURCES, EvaluationContext, Status, snapshot_from_json
from tests.builders import block_policy, snapshot_json

# Field names and values the controls actually read, so random data reaches real code paths.
KEYS = ["isEnabled", "state", "conditions", "clientAppTypes", "users", "includeUsers", "excludeUsers",
        "excludeGroups", "excludeRoles", "applications", "includeApplications", "excludeApplications", "locations",
        "includeLocations", "excludeLocations", "platforms", "includePlatforms", "excludePlatforms", "devices",
        "deviceFilter", "userRiskLevels", "signInRiskLevels", "grantControls", "builtInControls", "id",
        "displayName", "modifiedDateTime", "createdDateTime", "excludeGuestsOrExternalUsers",
        "guestOrExternalUserTypes", "SmtpClientAuthenticationDisabled", "PopEnabled", "ImapEnabled", "Identity",
        "PrimarySmtpAddress", "ExternalDirectoryObjectId", "AuthenticationPolicy", "DefaultAuthenticationPolicy",
        "OAuth2ClientProfileEnabled", "Name", "AllowBasicAuthSmtp", "AllowBasicAuthPop", "UserPrincipalName",
        "isLegacyAuthProtocolsEnabled", "clientAppUsed", "status", "errorCode", "userPrincipalName", "userId"]
WORDS = ["All", "all", "enabled", "disabled", "enabledForReportingButNotEnforced", "block", "mfa", "other",
         "exchangeActiveSync", "True", "False", "true", "", "IMAP4", "POP3", "Authenticated SMTP", "Other clients",
         "Browser", "2026-11-23T07:00:00Z", "2026-11-22T20:00:00.1234567Z", "not a date", "Block Basic Auth",
         "internalGuest,b2bCollaborationGuest"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 60000), st.floats(allow_nan=False),
                    st.sampled_from(WORDS), st.text(max_size=8))
fragments = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(KEYS), children, max_size=6)),
    max_leaves=25,
)
# A source is anything: a fragment, a list of fragments, or a realistic object with random holes.
sources = st.one_of(fragments, st.lists(fragments, max_size=5),
                    st.builds(lambda patch: [block_policy(**patch)],
                              st.dictionaries(st.sampled_from(["state", "conditions.users", "conditions.clientAppTypes",
                                                               "grantControls", "conditions.locations",
                                                               "conditions.platforms", "modifiedDateTime"]),
                                              fragments, max_size=3)))


@st.composite
def odd_snapshots(draw):
    document = snapshot_json(
        graph_sources={name: draw(sources) for name in GRAPH_SOURCES if draw(st.booleans())},
        exchange_sources={name: draw(sources) for name in EXCHANGE_SOURCES if draw(st.booleans())},
    )
    for name in draw(st.lists(st.sampled_from([f"graph.{n}" for n in GRAPH_SOURCES] +
                                              [f"exchange.{n}" for n in EXCHANGE_SOURCES]), max_size=3)):
        document["errors"][name] = {"status": draw(st.sampled_from([401, 403, 429, 500, None])),
                                    "code": draw(st.sampled_from(["", "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                                                                  "AADSTS700016"])), "message": "m"}
    return snapshot_from_json(document)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(odd_snapshots(), st.one_of(st.none(), st.sampled_from(["2026-11-22T20:00:00Z", "2020-01-01T00:00:00Z"])))
def test_every_control_answers_without_raising(snapshot, effective_at):
    from shared.model import parse_time

    context = EvaluationContext(block_effective_at=parse_time(effective_at, "t") if effective_at else None)
    for control in controls():
        result = control.check(snapshot, context)  # called directly: a raise here fails the test
        assert result.control == control.id
        assert result.status in set(Status)
        assert isinstance(result.summary, str) and result.summary.strip()
        json.dumps(result.to_json())  # evidence stays serialisable
    assert [r.control for r in evaluate(snapshot, context)] == [c.id for c in controls()]
