"""Onboarding a tenant against the simulator's per-tenant failure modes, over real HTTPS with the real SDKs.

Each mode is what a real customer tenant shows when one onboarding step was skipped: no admin consent (no service
principal: AADSTS7000229), consent revoked (tokens without roles), an app id Entra does not know (AADSTS700016), a
Graph permission missing from the app (refused as Graph refuses it for that source), Exchange.ManageAsApp missing
(401), no Exchange role for the app (Exchange 403), no Entra ID P1 licence (403 on the sign-in reports). The
check must name exactly that, with its fix; `authwatch tenants add` must register only a tenant that can be read.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime, timezone

import pytest

from shared.cli import main
from shared.collect.credentials import CredentialSpec
from shared.tenants import permissions
from shared.tenants.onboarding import AccessCheck, admin_consent_url, check_access
from shared.tenants.registry import TenantRegistry
from simulator.defaults import DEFAULT_PERMISSIONS
from tests.conftest import endpoints_for

pytestmark = pytest.mark.integration

APP_ID = "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50"
APP_TENANT = "0a000000-0000-4000-8000-0000000000ff"
MI_CLIENT_ID = "0b0b0b0b-1111-4222-8333-944445555777"
MI_PRINCIPAL_ID = "0c0c0c0c-1111-4222-8333-944445555888"
SECRET = "the-right-secret"
ISSUER = f"https://login.microsoftonline.com/{APP_TENANT}/v2.0"
SECRET_SETTING = "AUTHWATCH_SECRET_CONTOSO"
SECRET_SPEC = CredentialSpec(mode="secret", client_id=APP_ID, secret_setting=SECRET_SETTING)
FEDERATED_SPEC = CredentialSpec(mode="federated", client_id=APP_ID, managed_identity_client_id=MI_CLIENT_ID)
GRAPH_SOURCES = ("graph.organization", "graph.securityDefaults", "graph.conditionalAccessPolicies",
                 "graph.sharepointSettings", "graph.signIns", "graph.directoryAudits")


def scenario(tenant_id: str, **tenant) -> dict:
    return {
        "app": {"clientId": APP_ID, "clientSecret": SECRET,
                "federatedCredentials": [{"issuer": ISSUER, "subject": MI_PRINCIPAL_ID,
                                          "audience": "api://AzureADTokenExchange"}]},
        "tenants": [{"tenantId": tenant_id, "displayName": "Contoso", **tenant}],
    }


def without(*names: str) -> list[str]:
    return [name for name in DEFAULT_PERMISSIONS if name not in names]


def federated_assertion(subject: str = MI_PRINCIPAL_ID) -> str:
    """A token shaped like the managed identity's for api://AzureADTokenExchange (the simulator checks the claims,
    not the external issuer's signature)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": ISSUER, "sub": subject, "aud": "api://AzureADTokenExchange", "iat": now, "nbf": now,
              "exp": now + 600, "oid": subject, "tid": APP_TENANT}
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(b"managed-identity-test-key", signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def check(sim, tenant_id: str, spec: CredentialSpec = SECRET_SPEC, env: dict | None = None,
          **kwargs) -> AccessCheck:
    env = {SECRET_SETTING: SECRET} if env is None else env
    return asyncio.run(check_access(tenant_id, spec, endpoints_for(sim), env, now=datetime.now(timezone.utc),
                                    **kwargs))


def kinds(result: AccessCheck) -> list[str]:
    return [problem.kind for problem in result.problems]


@pytest.fixture
def tenant_id() -> str:
    return str(uuid.uuid4())


# -- the check, mode by mode ---------------------------------------------------------------------------------------

def test_a_healthy_tenant_passes_every_probe(simulator_for, tenant_id):
    """Token, every Graph source the collector reads, the Exchange token and one cmdlet: all answer."""
    sim = simulator_for(scenario(tenant_id))
    result = check(sim, tenant_id)
    assert result.ok and result.problems == ()
    assert [probe.name for probe in result.probes] == ["token.graph", *GRAPH_SOURCES, "token.exchange",
                                                      "exchange.organizationConfig"]
    assert all(probe.ok for probe in result.probes)


def test_missing_consent_is_named_with_the_admin_consent_url(simulator_for, tenant_id):
    """consent false (no service principal): Entra refuses the token with AADSTS7000229; the fix is the tenant's
    admin-consent page."""
    sim = simulator_for(scenario(tenant_id, consent=False))
    result = check(sim, tenant_id)
    assert not result.ok and kinds(result) == ["consent"]
    problem = result.problems[0]
    assert "Admin consent is missing" in problem.summary
    assert admin_consent_url(tenant_id, APP_ID, sim.url) in problem.fix
    assert result.probes[0].error.code == "AADSTS7000229"
    assert [probe.name for probe in result.probes] == ["token.graph"]  # nothing else can work without a token


def test_an_app_id_entra_does_not_know_is_named_as_such(simulator_for, tenant_id):
    """AADSTS700016 is an app id Entra cannot resolve (a wrong client id, a deleted registration), not consent."""
    sim = simulator_for(scenario(tenant_id, app={"clientId": "44444444-4444-4444-4444-444444444444",
                                                 "clientSecret": "other"}))
    result = check(sim, tenant_id)
    assert not result.ok and kinds(result) == ["consent"]
    assert result.probes[0].error.code == "AADSTS700016"
    assert "does not know the app" in result.problems[0].summary and "client id" in result.problems[0].fix


def test_revoked_consent_is_one_consent_problem_not_a_list_of_permissions(simulator_for, tenant_id):
    """Consent revoked with the service principal kept: tokens come without roles and every Graph source refuses.
    That is one thing to fix (consent again), not five missing permissions."""
    sim = simulator_for(scenario(tenant_id, consent="revoked"))
    result = check(sim, tenant_id)
    assert not result.ok
    assert sorted(kinds(result)) == ["consent", "exchange_permission"]
    [consent] = [problem for problem in result.problems if problem.kind == "consent"]
    assert "holds no permission" in consent.summary and set(consent.sources) == set(GRAPH_SOURCES)
    assert admin_consent_url(tenant_id, APP_ID, sim.url) in consent.fix


def test_a_missing_graph_permission_is_named_once_with_its_id_and_the_reconsent(simulator_for, tenant_id):
    """Policy.Read.All missing: CA policies and security defaults both answer 403; one problem names the permission,
    its role id and the re-consent link; the other sources are fine."""
    sim = simulator_for(scenario(tenant_id, permissions=without("Policy.Read.All")))
    result = check(sim, tenant_id)
    assert not result.ok and kinds(result) == ["graph_permission"]
    problem = result.problems[0]
    assert problem.permission == "Policy.Read.All"
    assert set(problem.sources) == {"graph.conditionalAccessPolicies", "graph.securityDefaults"}
    assert permissions.POLICY_READ.id in problem.fix
    assert admin_consent_url(tenant_id, APP_ID, sim.url) in problem.fix
    failed = {probe.name for probe in result.probes if not probe.ok}
    assert failed == {"graph.conditionalAccessPolicies", "graph.securityDefaults"}


@pytest.mark.parametrize(("missing", "sources"), [
    # SharePoint answers a missing permission with 401 accessDenied, not 403: still a permission, not consent.
    ("SharePointTenantSettings.Read.All", {"graph.sharepointSettings"}),
    ("AuditLog.Read.All", {"graph.signIns", "graph.directoryAudits"}),
    ("Directory.Read.All", {"graph.organization", "graph.directoryAudits"}),
])
def test_each_graph_permission_is_diagnosed(simulator_for, tenant_id, missing, sources):
    sim = simulator_for(scenario(tenant_id, permissions=without(missing)))
    result = check(sim, tenant_id)
    assert not result.ok
    assert [(p.kind, p.permission) for p in result.problems] == [("graph_permission", missing)]
    assert set(result.problems[0].sources) == sources


def test_missing_exchange_manage_as_app_is_named(simulator_for, tenant_id):
    """Without Exchange.ManageAsApp, InvokeCommand answers 401: the fix adds the permission and re-consents."""
    sim = simulator_for(scenario(tenant_id, permissions=without("Exchange.ManageAsApp")))
    result = check(sim, tenant_id)
    assert not result.ok and kinds(result) == ["exchange_permission"]
    problem = result.problems[0]
    assert problem.permission == "Exchange.ManageAsApp"
    assert permissions.EXCHANGE_MANAGE_AS_APP.id in problem.fix and permissions.EXCHANGE_APP_ID in problem.fix


def test_a_missing_exchange_role_is_named_with_the_role_group_and_the_fallback(simulator_for, tenant_id):
    """exchangeRole false: Exchange answers a bare 403; the fix registers the app's service principal in Exchange
    and puts it in a role group with the two View-Only roles, with Global Reader as the documented fallback."""
    sim = simulator_for(scenario(tenant_id, exchangeRole=False))
    result = check(sim, tenant_id)
    assert not result.ok and kinds(result) == ["exchange_role"]
    problem = result.problems[0]
    assert problem.permission == "Exchange role: View-Only Configuration"
    for text in (f"New-ServicePrincipal -AppId {APP_ID}", '"View-Only Configuration","View-Only Recipients"',
                 'Add-RoleGroupMember -Identity "authwatch readers"', f"az ad sp show --id {APP_ID}"):
        assert text in problem.fix, text
    assert problem.fix.index("New-RoleGroup") < problem.fix.index(permissions.GLOBAL_READER.id)  # fallback last


def test_a_missing_licence_is_reported_but_does_not_block(simulator_for, tenant_id):
    """licensed false: the sign-in reports answer 403 Authentication_RequestFromNonPremiumTenantOrB2CTenant. The
    tenant can still be monitored (those controls say not_applicable), so the check passes with a note."""
    sim = simulator_for(scenario(tenant_id, licensed=False))
    result = check(sim, tenant_id)
    assert result.ok and kinds(result) == ["licence"]
    problem = result.problems[0]
    assert not problem.blocking
    assert set(problem.sources) == {"graph.signIns"}  # the audit log is in every Entra edition
    assert "P1" in problem.summary


def test_several_missing_things_are_all_named(simulator_for, tenant_id):
    sim = simulator_for(scenario(tenant_id, exchangeRole=False, licensed=False,
                                 permissions=without("SharePointTenantSettings.Read.All")))
    result = check(sim, tenant_id)
    assert sorted(kinds(result)) == ["exchange_role", "graph_permission", "licence"]


def test_a_wrong_secret_is_a_credential_problem(simulator_for, tenant_id):
    sim = simulator_for(scenario(tenant_id))
    result = check(sim, tenant_id, env={SECRET_SETTING: "not-the-secret"})
    assert not result.ok and kinds(result) == ["credential"]
    assert SECRET_SETTING in result.problems[0].fix


def test_a_secret_setting_that_is_not_set_is_a_credential_problem(simulator_for, tenant_id):
    sim = simulator_for(scenario(tenant_id))
    result = check(sim, tenant_id, env={})
    assert not result.ok and kinds(result) == ["credential"]
    assert f"app setting {SECRET_SETTING} is not set" in result.problems[0].summary


def test_federated_mode_signs_in_with_the_identity_assertion(simulator_for, tenant_id):
    sim = simulator_for(scenario(tenant_id))
    result = check(sim, tenant_id, FEDERATED_SPEC, env={}, assertion_provider=federated_assertion)
    assert result.ok and result.problems == ()


def test_federated_mode_without_a_matching_federated_credential(simulator_for, tenant_id):
    """AADSTS70021: the fix is the `az ad app federated-credential create` command."""
    sim = simulator_for(scenario(tenant_id))
    result = check(sim, tenant_id, FEDERATED_SPEC, env={},
                   assertion_provider=lambda: federated_assertion(subject=str(uuid.uuid4())))
    assert not result.ok and kinds(result) == ["credential"]
    assert "az ad app federated-credential create" in result.problems[0].fix


# -- `authwatch tenants add` end to end (simulator + Azurite) ------------------------------------------------------

@pytest.fixture
def cli_env(monkeypatch, storage_connection_string):
    """Point the CLI at a simulator and at the test storage; returns a function that starts the simulator."""
    def start(sim):
        for name, value in {"AUTHWATCH_AUTHORITY_HOST": sim.url, "AUTHWATCH_GRAPH_URL": sim.graph_url,
                            "AUTHWATCH_EXCHANGE_URL": sim.url, "AUTHWATCH_CA_BUNDLE": sim.ca_path,
                            "AUTHWATCH_STORAGE_CONNECTION_STRING": storage_connection_string,
                            "AUTHWATCH_APP_CLIENT_ID": APP_ID, SECRET_SETTING: SECRET}.items():
            monkeypatch.setenv(name, value)
        for name in ("AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_TENANT_ID"):
            monkeypatch.delenv(name, raising=False)
        return sim
    return start


def registered(connection_string: str, tenant_id: str):
    async def get():
        async with TenantRegistry.from_connection_string(connection_string) as registry:
            await registry.create()
            return await registry.get(tenant_id)
    return asyncio.run(get())


def add(tenant_id: str, *extra: str) -> int:
    return main(["tenants", "add", "--tenant", tenant_id, "--name", "Contoso", "--credential-mode", "secret",
                 "--secret-setting", SECRET_SETTING, *extra])


def test_cli_registers_a_healthy_tenant_after_printing_the_steps(simulator_for, cli_env, tenant_id, capsys,
                                                                storage_connection_string):
    sim = cli_env(simulator_for(scenario(tenant_id)))
    assert add(tenant_id) == 0
    out = capsys.readouterr().out
    assert admin_consent_url(tenant_id, APP_ID, sim.url) in out
    assert "Global Reader" in out and permissions.GLOBAL_READER.id in out
    assert f"Registered Contoso ({tenant_id})" in out
    config = registered(storage_connection_string, tenant_id)
    assert config is not None and config.credential == SECRET_SPEC


def test_cli_refuses_a_tenant_without_consent_and_says_why(simulator_for, cli_env, tenant_id, capsys,
                                                          storage_connection_string):
    cli_env(simulator_for(scenario(tenant_id, consent=False)))
    assert add(tenant_id) == 1
    captured = capsys.readouterr()
    assert "MISSING (consent): Admin consent is missing" in captured.out
    assert "Not registered" in captured.err
    assert registered(storage_connection_string, tenant_id) is None


def test_cli_force_registers_anyway(simulator_for, cli_env, tenant_id, storage_connection_string):
    cli_env(simulator_for(scenario(tenant_id, exchangeRole=False)))
    assert add(tenant_id, "--force") == 0
    assert registered(storage_connection_string, tenant_id) is not None


def test_cli_registers_an_unlicensed_tenant_with_a_note(simulator_for, cli_env, tenant_id, capsys,
                                                       storage_connection_string):
    cli_env(simulator_for(scenario(tenant_id, licensed=False)))
    assert add(tenant_id) == 0
    assert "NOTE (licence)" in capsys.readouterr().out
    assert registered(storage_connection_string, tenant_id) is not None


def test_cli_check_only_registers_nothing_and_json_is_one_object(simulator_for, cli_env, tenant_id, capsys,
                                                                storage_connection_string):
    cli_env(simulator_for(scenario(tenant_id, permissions=without("AuditLog.Read.All"))))
    assert add(tenant_id, "--check-only", "--format", "json") == 1
    document = json.loads(capsys.readouterr().out)
    assert document["registered"] is False and document["check"]["ok"] is False
    assert [p["permission"] for p in document["check"]["problems"]] == ["AuditLog.Read.All"]
    assert [step["title"] for step in document["steps"]][:2] == ["Admin consent", "Exchange read access for the app"]
    assert registered(storage_connection_string, tenant_id) is None


def test_cli_does_not_register_a_tenant_twice(simulator_for, cli_env, tenant_id, capsys):
    cli_env(simulator_for(scenario(tenant_id)))
    assert add(tenant_id) == 0
    assert add(tenant_id) == 1
    assert "already registered" in capsys.readouterr().err


def test_cli_federated_mode_with_a_workload_identity_token_file(simulator_for, cli_env, tenant_id, tmp_path,
                                                               monkeypatch, capsys, storage_connection_string):
    """The default, secretless mode: the check signs in with the assertion in AZURE_FEDERATED_TOKEN_FILE."""
    cli_env(simulator_for(scenario(tenant_id)))
    token_file = tmp_path / "token"
    token_file.write_text(federated_assertion())
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AZURE_CLIENT_ID", MI_CLIENT_ID)
    assert main(["tenants", "add", "--tenant", tenant_id, "--name", "Fabrikam"]) == 0
    out = capsys.readouterr().out
    assert "az ad app federated-credential create" in out and "api://AzureADTokenExchange" in out
    config = registered(storage_connection_string, tenant_id)
    assert config is not None and config.credential == FEDERATED_SPEC


def test_cli_rejects_bad_input_with_status_2(cli_env, simulator_for, tenant_id, capsys, monkeypatch):
    cli_env(simulator_for(scenario(tenant_id)))
    assert main(["tenants", "add", "--tenant", "not-a-guid", "--name", "X", "--credential-mode", "secret",
                 "--secret-setting", SECRET_SETTING]) == 2
    monkeypatch.delenv("AUTHWATCH_APP_CLIENT_ID")
    assert add(tenant_id) == 2
    assert "AUTHWATCH_APP_CLIENT_ID" in capsys.readouterr().err


# -- diagnosis of failures the simulator cannot produce ------------------------------------------------------------

def diagnosed(*probes):
    from shared.collect.endpoints import MicrosoftEndpoints
    from shared.tenants.onboarding import diagnose

    return diagnose(str(uuid.UUID(int=1)), FEDERATED_SPEC, MicrosoftEndpoints(), list(probes))


def test_no_managed_identity_where_the_check_runs_says_where_it_can_run():
    from shared.model import SourceError
    from shared.tenants.onboarding import Probe

    [problem] = diagnosed(Probe("token.graph", SourceError(None, "CredentialUnavailableError",
                                                           "ManagedIdentityCredential authentication unavailable")))
    assert problem.kind == "credential" and problem.blocking
    assert "AZURE_FEDERATED_TOKEN_FILE" in problem.fix and "--skip-check" in problem.fix


def test_throttling_blocks_as_unverified_but_an_odd_answer_does_not():
    from shared.model import SourceError
    from shared.tenants.onboarding import Probe

    throttled, odd = diagnosed(Probe("graph.organization", SourceError(429, "TooManyRequests", "slow down")),
                               Probe("graph.sharepointSettings", SourceError(404, "itemNotFound", "no SharePoint")))
    assert (throttled.kind, throttled.blocking) == ("unverified", True)
    assert (odd.kind, odd.blocking) == ("source", False)
