"""Who changed an Exchange or SharePoint protection, from unified audit records: the right actor or None."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from shared.state.attribution_audit import (ANY, KINDS, MICROSOFT, ObservedChange, attribute, query_plans)

SINCE = datetime(2026, 12, 6, 8, 0, tzinfo=timezone.utc)
SEEN = SINCE + timedelta(minutes=15)
IN = SINCE + timedelta(minutes=5)


def exo(operation: str, parameters: dict[str, Any], *, at: datetime = IN, upn: str = "admin@contoso.com",
        user_type: str = "admin", object_id: str | None = None, result: str = "True", **data: Any) -> dict[str, Any]:
    """An Exchange admin auditLogRecord as Graph lists it (Parameters as Exchange logs them: text values)."""
    audit = {"Operation": operation, "ResultStatus": result, "UserId": upn, "RecordType": 1,
             "Parameters": [{"Name": name, "Value": value} for name, value in parameters.items()], **data}
    if object_id is not None:
        audit["ObjectId"] = object_id
    return {"id": f"rec-{operation}-{at.isoformat()}", "createdDateTime": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "auditLogRecordType": "exchangeAdmin", "operation": operation, "userType": user_type, "userId": upn,
            "userPrincipalName": upn, "objectId": object_id, "service": "Exchange", "auditData": audit}


def change(kind: str, **kwargs: Any) -> ObservedChange:
    return ObservedChange(kind, seen_at=kwargs.pop("seen_at", SEEN), since=kwargs.pop("since", SINCE), **kwargs)


SMTP_ON = change("transportSmtpAuth", settings={"SmtpClientAuthenticationDisabled": False})


def test_smtp_auth_re_enabled_by_an_admin_names_the_admin():
    record = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"}, upn="jane@contoso.com")
    assert attribute(SMTP_ON, [record]) == {
        "changedBy": "jane@contoso.com", "changedAt": "2026-12-06T08:05:00Z", "cmdlet": "Set-TransportConfig",
        "parameters": {"SmtpClientAuthenticationDisabled": "False"}, "byMicrosoft": False, "source": "auditLogQuery"}


def test_powershell_spellings_of_the_value_match():
    record = exo("set-transportconfig", {"SmtpClientAuthenticationDisabled": "$false"})
    assert attribute(SMTP_ON, [record])["changedBy"] == "admin@contoso.com"


def test_set_casmailbox_counts_only_for_the_mailbox_it_named():
    jane = change("mailboxSmtpAuth", object_ids=("Jane Doe", "jane@contoso.com", "9f1c…-guid"),
                  settings={"SmtpClientAuthenticationDisabled": False})
    other = exo("Set-CASMailbox", {"Identity": "bob@contoso.com", "SmtpClientAuthenticationDisabled": "False"},
                upn="eve@contoso.com", at=IN + timedelta(minutes=1))
    right = exo("Set-CASMailbox", {"Identity": "JANE@contoso.com", "SmtpClientAuthenticationDisabled": "False"},
                upn="ops@contoso.com")
    assert attribute(jane, [other]) is None
    assert attribute(jane, [other, right])["changedBy"] == "ops@contoso.com"


def test_the_object_can_be_named_by_objectid_paths_as_exchange_logs_them():
    jane = change("mailboxSmtpAuth", object_ids=("Jane Doe",))
    record = exo("Set-CASMailbox", {"SmtpClientAuthenticationDisabled": "False"},
                 object_id="EURPR01A001.prod.outlook.com/Microsoft Exchange Hosted Organizations/contoso.onmicrosoft"
                           ".com/Jane Doe")
    assert attribute(jane, [record])["changedBy"] == "admin@contoso.com"


def test_a_per_object_change_without_object_names_is_never_attributed():
    record = exo("Set-CASMailbox", {"Identity": "jane", "SmtpClientAuthenticationDisabled": "False"})
    assert attribute(change("mailboxSmtpAuth"), [record]) is None


def test_a_change_microsoft_made_itself_says_so():
    record = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"}, user_type="system",
                 upn="NT AUTHORITY\\SYSTEM (Microsoft.Exchange.ServiceHost)")
    attribution = attribute(SMTP_ON, [record])
    assert attribution["byMicrosoft"] is True and attribution["changedBy"] == MICROSOFT


@pytest.mark.parametrize("user_type", ["dcAdmin", "systemPolicy", "4"])
def test_documented_microsoft_user_types_are_microsoft(user_type):
    record = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"}, user_type=user_type,
                 upn="someone")
    assert attribute(SMTP_ON, [record])["byMicrosoft"] is True


def test_the_user_id_alone_reveals_a_system_account():
    record = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"}, user_type="",
                 upn="NT AUTHORITY\\SYSTEM (w3wp)")
    assert attribute(SMTP_ON, [record])["changedBy"] == MICROSOFT


def test_a_system_account_with_an_admin_user_type_is_not_guessed():
    record = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"}, user_type="admin",
                 upn="NT AUTHORITY\\SYSTEM (Microsoft.Exchange.ServiceHost)")
    assert attribute(SMTP_ON, [record]) is None


def test_an_app_is_named_by_its_app_id():
    record = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"}, user_type="servicePrincipal",
                 upn="ServicePrincipal_abc", AppId="11111111-2222-3333-4444-555555555555")
    attribution = attribute(SMTP_ON, [record])
    assert attribution["changedBy"] == "app 11111111-2222-3333-4444-555555555555"
    assert attribution["byMicrosoft"] is False


@pytest.mark.parametrize("at", [SINCE - timedelta(minutes=1), SINCE, SEEN + timedelta(seconds=1)])
def test_a_record_outside_the_interval_is_ignored(at):
    record = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"}, at=at)
    assert attribute(SMTP_ON, [record]) is None


def test_the_end_of_the_interval_is_inside_it():
    record = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"}, at=SEEN)
    assert attribute(SMTP_ON, [record])["changedAt"] == "2026-12-06T08:15:00Z"


def test_no_record_is_none():
    assert attribute(SMTP_ON, []) is None
    assert attribute(SMTP_ON, [exo("Set-Mailbox", {"SmtpClientAuthenticationDisabled": "False"})]) is None
    assert attribute(SMTP_ON, [exo("Set-TransportConfig", {"MaxSendSize": "25MB"})]) is None
    assert attribute(SMTP_ON, ["not a record", None, {"operation": 7}]) is None


def test_the_newest_record_wins():
    older = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"}, upn="first@contoso.com")
    newer = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"}, upn="second@contoso.com",
                at=IN + timedelta(minutes=3))
    assert attribute(SMTP_ON, [newer, older])["changedBy"] == "second@contoso.com"


def test_when_the_newest_record_set_another_value_the_actor_is_not_yet_known():
    """Enabled by A, disabled by B, enabled again by C whose record has not arrived: never A."""
    enabled = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"}, upn="a@contoso.com")
    disabled = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "True"}, upn="b@contoso.com",
                   at=IN + timedelta(minutes=2))
    assert attribute(SMTP_ON, [enabled, disabled]) is None


def test_a_failed_cmdlet_changed_nothing():
    failed = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"}, upn="x@contoso.com",
                 result="False", at=IN + timedelta(minutes=2))
    done = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"}, upn="y@contoso.com")
    assert attribute(SMTP_ON, [failed, done])["changedBy"] == "y@contoso.com"


def test_two_actors_at_the_same_moment_are_not_guessed_between():
    one = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"}, upn="one@contoso.com")
    two = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"}, upn="two@contoso.com")
    assert attribute(SMTP_ON, [one, two]) is None


def test_a_record_without_an_actor_is_not_an_attribution():
    record = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"}, upn="")
    assert attribute(SMTP_ON, [record]) is None


def test_authentication_policy_keeps_only_the_relevant_parameters():
    policy = change("authenticationPolicy", object_ids=("Allow SMTP",), settings={"AllowBasicAuthSmtp": True})
    record = exo("Set-AuthenticationPolicy", {"Identity": "Allow SMTP", "AllowBasicAuthSmtp": "True",
                                              "AllowBasicAuthPop": "False", "Confirm": "False"})
    assert attribute(policy, [record])["parameters"] == {"AllowBasicAuthSmtp": "True"}
    created = exo("New-AuthenticationPolicy", {"Name": "Allow SMTP", "AllowBasicAuthSmtp": "True"},
                  upn="new@contoso.com")
    assert attribute(policy, [created])["cmdlet"] == "New-AuthenticationPolicy"


def test_a_newer_change_to_another_protocol_of_the_policy_does_not_hide_the_one_seen():
    policy = change("authenticationPolicy", object_ids=("Allow SMTP",), settings={"AllowBasicAuthSmtp": True})
    smtp = exo("Set-AuthenticationPolicy", {"Identity": "Allow SMTP", "AllowBasicAuthSmtp": "True"},
               upn="smtp@contoso.com")
    pop = exo("Set-AuthenticationPolicy", {"Identity": "Allow SMTP", "AllowBasicAuthPop": "False"},
              upn="pop@contoso.com", at=IN + timedelta(minutes=2))
    assert attribute(policy, [smtp, pop])["changedBy"] == "smtp@contoso.com"


def test_user_policy_and_org_default_and_mailbox_plan():
    user = change("userAuthenticationPolicy", object_ids=("jane@contoso.com",),
                  settings={"AuthenticationPolicy": "Allow SMTP"})
    record = exo("Set-User", {"Identity": "jane@contoso.com", "AuthenticationPolicy": "allow smtp"})
    assert attribute(user, [record])["parameters"] == {"AuthenticationPolicy": "allow smtp"}
    org = change("defaultAuthenticationPolicy", settings={"DefaultAuthenticationPolicy": ANY})
    assert attribute(org, [exo("Set-OrganizationConfig", {"DefaultAuthenticationPolicy": "Allow SMTP"})])
    plan = change("casMailboxPlan", object_ids=("ExchangeOnlineEnterprise",), settings={"ImapEnabled": True})
    record = exo("Set-CASMailboxPlan", {"Identity": "ExchangeOnlineEnterprise", "ImapEnabled": "True"})
    assert attribute(plan, [record])["changedBy"] == "admin@contoso.com"


def test_sharepoint_legacy_protocols_are_found_by_the_property_they_modified():
    record = {"createdDateTime": IN.isoformat(), "auditLogRecordType": "sharePoint", "operation": "SomeTenantOp",
              "userPrincipalName": "spo-admin@contoso.com", "userId": "spo-admin@contoso.com",
              "auditData": {"ModifiedProperties": [{"Name": "LegacyAuthProtocolsEnabled", "NewValue": "True",
                                                    "OldValue": "False"}]}}
    spo = change("sharepointLegacyAuth", settings={"LegacyAuthProtocolsEnabled": True})
    assert attribute(spo, [record])["changedBy"] == "spo-admin@contoso.com"
    assert attribute(spo, [{**record, "auditLogRecordType": "exchangeAdmin"}]) is None


def test_a_record_known_only_by_its_audit_data_still_counts():
    record = exo("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"})
    bare = {"auditData": {**record["auditData"], "CreationTime": "2026-12-06T08:05:00"}}
    assert attribute(SMTP_ON, [bare])["changedBy"] == "admin@contoso.com"


def test_parameter_values_are_bounded():
    record = exo("Set-User", {"Identity": "jane", "AuthenticationPolicy": "x" * 5000})
    attribution = attribute(change("userAuthenticationPolicy", object_ids=("jane",)), [record])
    assert len(attribution["parameters"]["AuthenticationPolicy"]) <= 200


def test_settings_must_be_parameters_of_the_kind():
    with pytest.raises(ValueError):
        attribute(change("transportSmtpAuth", settings={"PopEnabled": False}), [])
    with pytest.raises(KeyError):
        query_plans([change("noSuchKind")])


def test_one_query_covers_every_pending_exchange_change_and_sharepoint_gets_its_own():
    changes = [SMTP_ON, change("mailboxSmtpAuth", object_ids=("jane",), since=SINCE - timedelta(hours=1)),
               change("authenticationPolicy", object_ids=("p",), seen_at=SEEN + timedelta(minutes=15)),
               change("sharepointLegacyAuth", since=None)]
    exchange, sharepoint = query_plans(changes)
    assert exchange.record_types == ("exchangeAdmin",) and exchange.keyword is None
    assert set(exchange.operations) == {"Set-TransportConfig", "Set-CASMailbox", "Set-AuthenticationPolicy",
                                        "New-AuthenticationPolicy"}
    assert (exchange.start, exchange.end) == (SINCE - timedelta(hours=1), SEEN + timedelta(minutes=15))
    assert sharepoint.record_types == ("sharePoint",) and sharepoint.operations == ()
    assert sharepoint.keyword == "LegacyAuthProtocolsEnabled" and sharepoint.start < SEEN
    assert query_plans([]) == []
    assert all(kind.operations or kind.keyword for kind in KINDS.values())
