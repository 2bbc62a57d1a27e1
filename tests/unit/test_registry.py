"""Tenant registry and credential specs: validation with messages naming the field, no secret anywhere, due()."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from shared.collect import MicrosoftEndpoints, TenantAccess
from shared.collect.credentials import (
    PUBLIC_EXCHANGE_AUDIENCE,
    CredentialError,
    CredentialMisconfigured,
    CredentialSpec,
    UnavailableCredential,
    build_credential,
    exchange_audience,
)
from shared.tenants.config import RegistryError, TenantConfig, clean_error, due, tenant_key

TENANT = "8C1D0F6E-1111-4222-8333-944445555666"
APP_ID = "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50"
MI_ID = "0b0b0b0b-1111-4222-8333-944445555777"
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
SECRET_VALUE = "s3cr3t-value-that-must-never-show"

FEDERATED = {"mode": "federated", "clientId": APP_ID, "managedIdentityClientId": MI_ID}
SECRET = {"mode": "secret", "clientId": APP_ID, "secretSetting": "AUTHWATCH_SECRET_CONTOSO"}
CERTIFICATE = {"mode": "certificate", "clientId": APP_ID, "certificateSetting": "AUTHWATCH_CERT_CONTOSO"}


def body(**changes) -> dict:
    data = {"tenantId": TENANT, "displayName": "Contoso", "credential": dict(FEDERATED)}
    data.update(changes)
    return {key: value for key, value in data.items() if value is not ...}


def config(**changes) -> TenantConfig:
    return TenantConfig.from_json(body(**changes))


# -- credential specs -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [FEDERATED, SECRET, CERTIFICATE])
def test_each_mode_round_trips(data):
    spec = CredentialSpec.from_json(data)
    assert spec.to_json() == data
    assert CredentialSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(("data", "message"), [
    ({**SECRET, "mode": "password"}, "mode: expected one of federated, secret, certificate"),
    ({**SECRET, "clientId": "not-a-guid"}, "clientId: expected the app registration's client id"),
    ({"mode": "secret", "secretSetting": "X"}, "clientId: expected"),
    ({"mode": "secret", "clientId": APP_ID}, "secretSetting: required with mode secret"),
    ({**SECRET, "secretSetting": "has space"}, "secretSetting: expected the NAME of an app setting"),
    ({**SECRET, "secretSetting": "@Microsoft.KeyVault(SecretUri=https://v/s)"}, "secretSetting: expected the NAME"),
    ({"mode": "certificate", "clientId": APP_ID}, "certificateSetting: required with mode certificate"),
    ({"mode": "federated", "clientId": APP_ID}, "managedIdentityClientId: required with mode federated"),
    ({**FEDERATED, "managedIdentityClientId": "mi"}, "managedIdentityClientId: expected the managed identity's"),
    ({**FEDERATED, "secretSetting": "X"}, "secretSetting: not used with mode federated"),
    ({**SECRET, "certificateSetting": "X"}, "certificateSetting: not used with mode secret"),
    ({**SECRET, "clientSecret": SECRET_VALUE}, "clientSecret: unknown field"),
    ({**SECRET, "secretSetting": SECRET_VALUE}, "secretSetting: expected the NAME of an app setting"),  # pasted
    ({**SECRET, "clientId": SECRET_VALUE}, "clientId: expected"),
    ({**SECRET, "mode": SECRET_VALUE}, "mode: expected one of"),
])
def test_credential_spec_errors_name_the_field(data, message):
    with pytest.raises(CredentialError, match=f"^{message}") as caught:
        CredentialSpec.from_json(data)
    assert SECRET_VALUE not in str(caught.value)


def test_credential_spec_lowercases_ids():
    spec = CredentialSpec.from_json({**FEDERATED, "clientId": APP_ID.upper(), "managedIdentityClientId": MI_ID.upper()})
    assert spec.client_id == APP_ID and spec.managed_identity_client_id == MI_ID


def test_exchange_audience_follows_the_cloud():
    assert exchange_audience("https://login.microsoftonline.com") == PUBLIC_EXCHANGE_AUDIENCE
    assert exchange_audience("https://login.microsoftonline.us/") == "api://AzureADTokenExchangeUSGov"
    assert exchange_audience("https://login.chinacloudapi.cn") == "api://AzureADTokenExchangeChina"


ENDPOINTS = MicrosoftEndpoints()


def test_missing_app_setting_is_a_clear_credential_error():
    spec = CredentialSpec.from_json(SECRET)
    with pytest.raises(CredentialError, match="^app setting AUTHWATCH_SECRET_CONTOSO is not set"):
        build_credential(TENANT, spec, ENDPOINTS, {})
    with pytest.raises(CredentialError, match="^app setting AUTHWATCH_SECRET_CONTOSO is not set"):
        build_credential(TENANT, spec, ENDPOINTS, {"AUTHWATCH_SECRET_CONTOSO": ""})


def test_unreadable_certificate_is_a_clear_credential_error(tmp_path):
    spec = CredentialSpec.from_json(CERTIFICATE)
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(CredentialError, match="names no readable certificate file"):
        build_credential(TENANT, spec, ENDPOINTS, {"AUTHWATCH_CERT_CONTOSO": missing})
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(CredentialError, match="not a usable certificate") as caught:
        build_credential(TENANT, spec, ENDPOINTS, {"AUTHWATCH_CERT_CONTOSO": str(garbage)})
    assert "not a certificate" not in str(caught.value)  # the setting's content is never quoted


def test_building_credentials_does_no_io_and_returns_the_right_class():
    async def go():
        from azure.identity.aio import ClientAssertionCredential, ClientSecretCredential

        secret = build_credential(TENANT, CredentialSpec.from_json(SECRET), ENDPOINTS,
                                  {"AUTHWATCH_SECRET_CONTOSO": SECRET_VALUE})
        federated = build_credential(TENANT, CredentialSpec.from_json(FEDERATED), ENDPOINTS, {})
        assert isinstance(secret, ClientSecretCredential) and isinstance(federated, ClientAssertionCredential)
        await secret.close()
        await federated.close()

    asyncio.run(go())


def test_unavailable_credential_raises_a_client_authentication_error():
    from azure.core.exceptions import ClientAuthenticationError

    async def go():
        async with UnavailableCredential("app setting X is not set") as credential:
            with pytest.raises(ClientAuthenticationError, match="app setting X is not set") as caught:
                await credential.get_token("https://graph.microsoft.com/.default")
        assert isinstance(caught.value, CredentialMisconfigured)

    asyncio.run(go())


# -- TenantAccess -----------------------------------------------------------------------------------------------------

def test_tenant_access_keeps_the_legacy_positional_form_and_hides_the_secret():
    access = TenantAccess(TENANT, APP_ID, SECRET_VALUE, display_name="Contoso", settings={"a": 1})
    assert (access.client_id, access.client_secret, access.display_name) == (APP_ID, SECRET_VALUE, "Contoso")
    assert SECRET_VALUE not in repr(access)


def test_tenant_access_from_a_spec_hides_the_environment():
    env = {"AUTHWATCH_SECRET_CONTOSO": SECRET_VALUE}
    access = config(credential=SECRET).access(env)
    assert access.client_id == APP_ID and access.client_secret is None
    assert access.settings["approvedExclusions"]["users"] == []
    assert SECRET_VALUE not in repr(access)
    with pytest.raises(ValueError, match="either client_secret or credential_spec"):
        TenantAccess(TENANT, APP_ID, SECRET_VALUE, credential_spec=CredentialSpec.from_json(SECRET))


def test_tenant_access_never_raises_for_a_credential_it_cannot_build():
    async def go():
        credential = config(credential=SECRET).access({}).credential(ENDPOINTS)
        with pytest.raises(CredentialMisconfigured, match="app setting AUTHWATCH_SECRET_CONTOSO is not set"):
            await credential.get_token("https://graph.microsoft.com/.default")
        await credential.close()
        nothing = TenantAccess(TENANT, APP_ID).credential(ENDPOINTS)
        with pytest.raises(CredentialMisconfigured, match="no credential configured"):
            await nothing.get_token("https://graph.microsoft.com/.default")

    asyncio.run(go())


# -- TenantConfig -----------------------------------------------------------------------------------------------------

def test_minimal_config_is_normalised():
    cfg = config(displayName="  Contoso  ")
    assert cfg.tenant_id == TENANT.lower()
    assert cfg.display_name == "Contoso"
    assert cfg.enabled and cfg.schedule_minutes is None and cfg.tags == () and cfg.routing is None
    assert cfg.consecutive_failures == 0 and cfg.last_success_at is None
    assert cfg.settings() == {"approvedExclusions": {"users": [], "groups": [], "roles": [], "applications": [],
                                                     "locations": [], "guestOrExternalUserTypes": []}}


def test_full_config_round_trips_through_json():
    cfg = config(enabled=False, scheduleMinutes=60, tags=["gold", "eu", "gold"],
                 approvedExclusions={"users": ["u1", "u1", "u2"], "locations": ["loc"]},
                 routing={"teams": {"webhookSetting": "AUTHWATCH_TEAMS_CONTOSO"}},
                 lastSuccessAt="2026-11-23T07:00:00Z", lastAttemptAt="2026-11-23T07:30:00+00:00",
                 consecutiveFailures=2, lastError="AADSTS7000229: no service principal",
                 createdAt="2026-11-01T00:00:00Z", updatedAt="2026-11-02T00:00:00Z")
    assert cfg.tags == ("gold", "eu")
    assert cfg.approved_exclusions == {"users": ["u1", "u2"], "locations": ["loc"]}
    assert cfg.settings()["approvedExclusions"]["users"] == ["u1", "u2"]
    assert cfg.last_attempt_at == datetime(2026, 11, 23, 7, 30, tzinfo=timezone.utc)
    data = cfg.to_json()
    assert data["lastAttemptAt"] == "2026-11-23T07:30:00Z" and data["scheduleMinutes"] == 60
    assert TenantConfig.from_json(data) == cfg


def test_tenant_id_from_the_url_and_body_must_agree():
    data = body()
    del data["tenantId"]
    assert TenantConfig.from_json(data, tenant_id=TENANT).tenant_id == TENANT.lower()
    assert TenantConfig.from_json(body(), tenant_id=TENANT.lower()).tenant_id == TENANT.lower()
    with pytest.raises(RegistryError, match="^tenantId: the body says"):
        TenantConfig.from_json(body(), tenant_id="00000000-0000-4000-8000-000000000000")
    with pytest.raises(RegistryError, match="^tenantId: required"):
        TenantConfig.from_json(data)


@pytest.mark.parametrize(("changes", "message"), [
    ({"tenantId": "contoso.onmicrosoft.com"}, "tenantId: expected a GUID"),
    ({"tenantId": "x' or PartitionKey ne '"}, "tenantId: expected a GUID"),
    ({"displayName": ...}, "displayName: required"),
    ({"displayName": "   "}, "displayName: expected a non-empty name"),
    ({"displayName": "a" * 257}, "displayName: expected a non-empty name"),
    ({"displayName": 7}, "displayName: expected a non-empty name"),
    ({"credential": ...}, "credential: required"),
    ({"credential": "federated"}, "credential: expected a JSON object"),
    ({"credential": {**FEDERATED, "mode": "magic"}},
     "credential.mode: expected one of federated, secret, certificate"),
    ({"credential": {"mode": "secret", "clientId": APP_ID}}, "credential.secretSetting: required with mode secret"),
    ({"credential": {**SECRET, "secret": SECRET_VALUE}}, "credential.secret: unknown field"),
    ({"enabled": "yes"}, "enabled: expected true or false"),
    ({"scheduleMinutes": 4}, "scheduleMinutes: expected whole minutes between 5 and 1440"),
    ({"scheduleMinutes": 1441}, "scheduleMinutes: expected whole minutes between 5 and 1440"),
    ({"scheduleMinutes": 60.5}, "scheduleMinutes: expected whole minutes"),
    ({"scheduleMinutes": True}, "scheduleMinutes: expected whole minutes"),
    ({"approvedExclusions": ["u1"]}, "approvedExclusions: expected an object keyed by users"),
    ({"approvedExclusions": {"people": []}}, "approvedExclusions.people: unknown kind"),
    ({"approvedExclusions": {"users": "u1"}}, "approvedExclusions.users: expected a list of ids"),
    ({"approvedExclusions": {"users": ["ok", ""]}}, r"approvedExclusions.users\[1\]: expected a non-empty id"),
    ({"approvedExclusions": {"users": [f"user-{i:05d}-{'x' * 30}" for i in range(1000)]}},
     "approvedExclusions: too large"),
    ({"routing": ["teams"]}, "routing: expected an object or null"),
    ({"routing": {"x": {1, 2}}}, "routing: must be plain JSON"),
    ({"tags": "gold"}, "tags: expected a list of strings"),
    ({"tags": ["ok", ""]}, r"tags\[1\]: expected a non-empty tag"),
    ({"tags": [f"t{i}" for i in range(51)]}, "tags: at most 50 tags"),
    ({"lastSuccessAt": "yesterday"}, "lastSuccessAt: 'yesterday' is not an ISO 8601 timestamp"),
    ({"updatedAt": 1700000000}, "updatedAt: expected an ISO 8601 timestamp"),
    ({"consecutiveFailures": -1}, "consecutiveFailures: expected a whole number"),
    ({"lastError": 42}, "lastError: expected a string or null"),
    ({"schedule": 60}, "schedule: unknown field"),
])
def test_config_errors_name_the_field(changes, message):
    with pytest.raises(RegistryError, match=f"^{message}") as caught:
        config(**changes)
    assert SECRET_VALUE not in str(caught.value)


def test_api_input_cannot_set_what_authwatch_writes():
    with pytest.raises(RegistryError, match="^consecutiveFailures: written by authwatch itself"):
        TenantConfig.from_json(body(consecutiveFailures=0), config_only=True)
    with pytest.raises(RegistryError, match="^createdAt: written by authwatch itself"):
        TenantConfig.from_json(body(createdAt="2026-11-23T08:00:00Z"), config_only=True)
    with pytest.raises(RegistryError, match=r"^nick: unknown field \(allowed: tenantId, displayName, credential, "):
        TenantConfig.from_json(body(nick="c"), config_only=True)
    assert TenantConfig.from_json(body(scheduleMinutes=30), config_only=True).schedule_minutes == 30


def test_from_json_needs_an_object():
    with pytest.raises(RegistryError, match=r"^\(body\): expected a JSON object"):
        TenantConfig.from_json([body()])


def test_tenant_key_validates_before_any_query():
    assert tenant_key(TENANT) == TENANT.lower()
    for bad in ("", None, "00000000-0000-0000-0000-00000000000", f"{TENANT}'", "../x"):
        with pytest.raises(RegistryError, match="^tenantId: expected a GUID"):
            tenant_key(bad)


def test_nothing_secret_in_to_json_or_repr():
    cfg = config(credential=SECRET, routing={"webhook": "https://hooks.example/secret-path?sig=abc"})
    text = repr(cfg) + repr(cfg.credential) + str(cfg.to_json())
    assert SECRET_VALUE not in text
    assert "secret-path" not in repr(cfg)  # routing may hold webhook addresses: not in repr
    access = cfg.access({"AUTHWATCH_SECRET_CONTOSO": SECRET_VALUE})
    assert SECRET_VALUE not in repr(access)


def test_last_error_is_trimmed_and_redacted():
    long = "x " * 400
    assert len(clean_error(long)) <= 500
    scrubbed = clean_error("failed: Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2ln\n client_secret=hunter2&x=1 "
                           "https://a.blob/x?sv=1&sig=abcdef AccountKey=Zm9vYmFy;")
    for leaked in ("eyJhbGciOi", "hunter2", "abcdef", "Zm9vYmFy"):
        assert leaked not in scrubbed
    assert "\n" not in scrubbed
    assert config(lastError="token eyJa.eyJb.c2ln failed").last_error == "token [token] failed"


# -- due() ------------------------------------------------------------------------------------------------------------

def at(minutes: float) -> datetime:
    return NOW + timedelta(minutes=minutes)


def test_due_when_never_evaluated_and_never_when_disabled():
    assert due(config(), NOW, 15)
    assert not due(config(enabled=False), NOW, 15)
    assert not due(config(enabled=False, lastAttemptAt="2020-01-01T00:00:00Z"), NOW, 15)


def test_due_follows_the_interval_with_a_little_grace():
    cfg = config(lastSuccessAt="2026-11-23T08:01:50Z", lastAttemptAt="2026-11-23T08:01:50Z")
    # ticks every 5 min, default 15: finished 110 s after the 08:00 tick, due again at the 08:15 tick (not 08:20)
    assert not due(cfg, at(5), 15) and not due(cfg, at(10), 15)
    assert due(cfg, at(15), 15)
    late = config(lastAttemptAt="2026-11-23T08:02:30Z")  # more than the grace late: one tick later
    assert not due(late, at(15), 15) and due(late, at(20), 15)
    hourly = config(scheduleMinutes=60, lastAttemptAt="2026-11-23T08:00:20Z")
    assert not due(hourly, at(55), 15) and due(hourly, at(60), 15)
    fast = config(scheduleMinutes=5, lastAttemptAt="2026-11-23T08:00:20Z")
    assert not due(fast, at(2), 15) and due(fast, at(5), 15)


def test_a_failing_tenant_is_retried_at_its_interval_from_the_last_attempt():
    failing = config(lastSuccessAt="2026-11-22T08:00:00Z", lastAttemptAt="2026-11-23T08:00:00Z",
                     consecutiveFailures=3, lastError="AADSTS7000229")
    assert not due(failing, at(10), 15) and due(failing, at(15), 15)
    legacy = config(lastSuccessAt="2026-11-23T08:00:00Z")  # no attempt recorded: the success counts
    assert not due(legacy, at(10), 15) and due(legacy, at(15), 15)


def test_a_configuration_change_after_the_last_evaluation_makes_it_due_now():
    changed = config(lastAttemptAt="2026-11-23T08:00:00Z", updatedAt="2026-11-23T08:01:00Z")
    assert due(changed, at(2), 15)
    unchanged = config(lastAttemptAt="2026-11-23T08:00:00Z", updatedAt="2026-11-23T07:59:00Z")
    assert not due(unchanged, at(2), 15)
