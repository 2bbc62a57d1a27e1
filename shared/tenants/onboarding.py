"""Adding a tenant: the steps people take, and an end-to-end check that says exactly what is still missing.

One multi-tenant app registration (per deployment, in the operator's tenant) carries the manifest's permissions
(`shared/tenants/permissions.py`); the managed identity is its federated credential, so no secret exists. Per customer
tenant, its admin (1) consents to the app — the admin-consent URL — and (2) assigns the Entra role Global Reader to
the app's service principal, which the Exchange admin API requires on top of Exchange.ManageAsApp.

`check_access` then signs in to the new tenant exactly as the collector will (same credential spec, same
endpoints, same collector functions) and reads every Graph source and one Exchange cmdlet. Each failure becomes a
`Problem` naming what is missing — consent, a Graph permission, Exchange.ManageAsApp, the Global Reader role, the
Entra ID P1 licence, or the credential itself — with the fix. A missing licence does not block: those tenants are
monitored, and the sign-in based controls say not_applicable.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shared.collect import exchange, graph
from shared.collect.connection import EXCHANGE_SCOPE, GRAPH_SCOPE, http_client
from shared.collect.credentials import CredentialError, CredentialSpec, build_credential, exchange_audience
from shared.collect.deadline import DEFAULT_TENANT_DEADLINE_S, BoundedCredential, Deadline
from shared.collect.endpoints import MicrosoftEndpoints
from shared.collect.errors import is_permission_refusal
from shared.collect.snapshot import fetch_token, graph_client
from shared.model import LICENCE_ERROR_CODE, SourceError
from shared.tenants import permissions as manifest

# The Exchange read that proves Exchange.ManageAsApp + the role: every Get-* cmdlet needs the same two.
EXCHANGE_PROBE = "organizationConfig"
# Sign-ins and audits are read from this far back: enough to prove access, small enough for any tenant.
PROBE_WINDOW = timedelta(minutes=10)


def admin_consent_url(tenant_id: str, client_id: str, authority: str = "https://login.microsoftonline.com") -> str:
    """The page where the tenant's admin consents to every permission of the app registration, in one click."""
    return f"{authority.rstrip('/')}/{tenant_id}/adminconsent?client_id={client_id}"


# -- the steps --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    title: str
    who: str
    scope: str  # "per tenant" or "once per deployment"
    text: str
    commands: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "who": self.who, "scope": self.scope, "text": self.text,
                "commands": list(self.commands)}


def exchange_role_commands(tenant_id: str, client_id: str) -> tuple[str, ...]:
    """What an Exchange admin of the customer tenant runs so that the app may read Exchange, and no more: the app's
    service principal registered in Exchange and put in a role group holding View-Only Configuration and View-Only
    Recipients ("Option 2", https://learn.microsoft.com/en-us/powershell/exchange/app-only-auth-powershell-v2;
    New-ServicePrincipal takes the object id from Enterprise applications, not App registrations)."""
    roles = ",".join(f'"{role.name}"' for role in manifest.EXCHANGE_ROLES)
    group = manifest.EXCHANGE_ROLE_GROUP
    return (
        f"az login --tenant {tenant_id} --allow-no-subscriptions && az ad sp show --id {client_id} --query id -o tsv",
        "Connect-ExchangeOnline  # signed in as an Exchange Administrator of that tenant",
        f'New-ServicePrincipal -AppId {client_id} -ObjectId <the object id printed above> -DisplayName "authwatch"',
        f'New-RoleGroup -Name "{group}" -Roles {roles} -Description "authwatch: read-only legacy-auth monitoring"',
        f'Add-RoleGroupMember -Identity "{group}" -Member (Get-ServicePrincipal -Identity "authwatch").Identity',
    )


def role_assignment_commands(tenant_id: str, client_id: str,
                             graph_url: str = "https://graph.microsoft.com/v1.0") -> tuple[str, ...]:
    """The fallback where a role group cannot be set up: Azure CLI commands, run by an admin of the customer tenant,
    that give the app's service principal the Entra role Global Reader (read-only, but over every workload; one of
    the Entra roles the Exchange admin API accepts for app-only access)."""
    body = ('{"principalId":"\'"$sp"\'","roleDefinitionId":"' + manifest.GLOBAL_READER.id
            + '","directoryScopeId":"/"}')
    return (
        f"az login --tenant {tenant_id} --allow-no-subscriptions",
        f"sp=$(az ad sp show --id {client_id} --query id -o tsv)",
        f"az rest --method POST --url {graph_url.rstrip('/')}/roleManagement/directory/roleAssignments "
        f"--body '{body}'",
    )


def federated_credential_command(client_id: str, endpoints: MicrosoftEndpoints, *, operator_tenant: str | None = None,
                                 identity_principal_id: str | None = None) -> str:
    parameters = {
        "name": "authwatch-managed-identity",
        "issuer": f"{endpoints.authority.rstrip('/')}/{operator_tenant or '<operator tenant id>'}/v2.0",
        "subject": identity_principal_id or "<managed identity principal id>",
        "audiences": [exchange_audience(endpoints.authority)],
    }
    return f"az ad app federated-credential create --id {client_id} --parameters '{json.dumps(parameters)}'"


def onboarding_steps(tenant_id: str, spec: CredentialSpec, endpoints: MicrosoftEndpoints, *,
                     operator_tenant: str | None = None, identity_principal_id: str | None = None) -> list[Step]:
    """What has to happen, by whom, before authwatch can read `tenant_id` with `spec`."""
    steps = [
        Step("Admin consent", "a Global Administrator (or Privileged Role Administrator) of the tenant", "per tenant",
             "Open this page signed in to the tenant and accept. It grants the app's read-only permissions "
             f"({', '.join(p.name for p in manifest.customer_permissions() if p.kind == 'application')}) and "
             "creates its service principal. Consent again after permissions are added to the app.",
             (admin_consent_url(tenant_id, spec.client_id, endpoints.authority),)),
        Step("Exchange read access for the app", "an Exchange Administrator of the tenant", "per tenant",
             "Register the app's service principal in Exchange Online and put it in a role group with the read-only "
             f"roles {' and '.join(role.name for role in manifest.EXCHANGE_ROLES)} (least privilege; takes up to an "
             "hour to apply). Where that cannot be done, assign the Entra role Global Reader to the app's service "
             "principal instead (read-only over every workload): "
             + " && ".join(role_assignment_commands(tenant_id, spec.client_id, endpoints.graph)),
             exchange_role_commands(tenant_id, spec.client_id)),
    ]
    if spec.mode == "federated":
        steps.append(Step(
            "Federated credential (secretless sign-in)", "an owner of the app registration, in your own tenant",
            "once per deployment",
            "Lets the managed identity sign in as the app: issuer = your tenant, subject = the identity's principal "
            "id (azd env get-value AZURE_MANAGED_IDENTITY_PRINCIPAL_ID). infra/scripts/app-registration.sh does this "
            "after `azd provision`; skip if already done.",
            (federated_credential_command(spec.client_id, endpoints, operator_tenant=operator_tenant,
                                          identity_principal_id=identity_principal_id),)))
    else:
        setting = spec.secret_setting if spec.mode == "secret" else spec.certificate_setting
        kind = "client secret" if spec.mode == "secret" else "certificate (PEM, or PKCS#12 from Key Vault)"
        steps.append(Step(
            f"The app's {kind}", "the operator", "per credential",
            f"Mode {spec.mode} needs a {kind} of the app in app setting {setting}: store it in Key Vault (deploy "
            "with AUTHWATCH_DEPLOY_KEY_VAULT=true) and set the app setting to a Key Vault reference. Prefer mode "
            "federated, which needs no secret at all.",
            (f"az keyvault secret set --vault-name <vault> --name {str(setting).lower().replace('_', '-')} "
             "--file <file holding the value>",
             f"az functionapp config appsettings set -g <resource group> -n <function app> --settings "
             f"'{setting}=@Microsoft.KeyVault(SecretUri=https://<vault>.vault.azure.net/secrets/"
             f"{str(setting).lower().replace('_', '-')}/)'")))
    return steps


# -- the check --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Probe:
    """One request of the check: "token.graph", "graph.<source>", "token.exchange", "exchange.<source>"."""

    name: str
    error: SourceError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "error": self.error.to_json() if self.error else None}


@dataclass(frozen=True)
class Problem:
    """Something missing, in words, with the fix. `blocking` problems keep a tenant out of the registry."""

    kind: str  # consent | graph_permission | exchange_permission | exchange_role | licence | credential | tenant |
    #            unverified | source
    summary: str
    fix: str
    sources: tuple[str, ...] = ()
    blocking: bool = True
    permission: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "blocking": self.blocking, "summary": self.summary, "fix": self.fix,
                "sources": list(self.sources), "permission": self.permission}


@dataclass(frozen=True)
class AccessCheck:
    tenant_id: str
    probes: tuple[Probe, ...]
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """authwatch can monitor the tenant (a missing licence does not stop it)."""
        return not any(problem.blocking for problem in self.problems)

    def to_json(self) -> dict[str, Any]:
        return {"tenantId": self.tenant_id, "ok": self.ok, "probes": [probe.to_json() for probe in self.probes],
                "problems": [problem.to_json() for problem in self.problems]}


def assertion_from_file(path: str) -> Callable[[], str]:
    """A federated assertion read from a file on every use (the workload-identity convention,
    AZURE_FEDERATED_TOKEN_FILE: a CI job's or a pod's OIDC token, refreshed in place by the platform)."""
    def read() -> str:
        return Path(path).read_text(encoding="utf-8").strip()

    return read


async def _probe(tenant_id: str, spec: CredentialSpec, endpoints: MicrosoftEndpoints, env: Mapping[str, str],
                 now: datetime, assertion_provider: Callable[[], str] | None) -> list[Probe]:
    try:
        # Bounded like a collection's: a token endpoint that hangs is a TokenTimeout, not a check that never ends.
        credential = BoundedCredential(build_credential(tenant_id, spec, endpoints, env,
                                                        assertion_provider=assertion_provider),
                                       endpoints.timeout_s, Deadline.after(DEFAULT_TENANT_DEADLINE_S))
    except CredentialError as error:
        return [Probe("credential", SourceError(None, "CredentialError", str(error)))]
    http = http_client(endpoints)
    probes: list[Probe] = []
    try:
        token, failure = await fetch_token(credential, GRAPH_SCOPE)
        probes.append(Probe("token.graph", failure))
        if failure or token is None:
            return probes  # every other request would fail the same way
        client = graph_client(credential, endpoints, http)
        answers = await asyncio.gather(*(graph.read_source(client, source, now - PROBE_WINDOW)
                                         for source in graph.GRAPH_SOURCES))
        probes += [Probe(f"graph.{source.name}", error) for source, (_, error) in zip(graph.GRAPH_SOURCES, answers)]
        token, failure = await fetch_token(credential, EXCHANGE_SCOPE)
        probes.append(Probe("token.exchange", failure))
        if token is not None:
            source = next(item for item in exchange.EXCHANGE_SOURCES if item.name == EXCHANGE_PROBE)
            _, error = await exchange.read_source(http, endpoints.exchange, tenant_id, token, source)
            probes.append(Probe(f"exchange.{source.name}", error))
    finally:
        await credential.close()
        await http.aclose()
    return probes


async def check_access(tenant_id: str, spec: CredentialSpec, endpoints: MicrosoftEndpoints, env: Mapping[str, str],
                       *, now: datetime, assertion_provider: Callable[[], str] | None = None) -> AccessCheck:
    """Sign in to the tenant as the collector will and read what it reads; never raises for a refusal."""
    probes = await _probe(tenant_id, spec, endpoints, env, now, assertion_provider)
    return AccessCheck(tenant_id, tuple(probes), tuple(diagnose(tenant_id, spec, endpoints, probes)))


# -- what each failure means ------------------------------------------------------------------------------------------

def _reconsent(tenant_id: str, spec: CredentialSpec, endpoints: MicrosoftEndpoints) -> str:
    return (f"then the tenant's admin consents again at {admin_consent_url(tenant_id, spec.client_id, endpoints.authority)} "
            "(a consent given before a permission was added does not cover it)")


def _token_problem(probe: Probe, tenant_id: str, spec: CredentialSpec, endpoints: MicrosoftEndpoints) -> Problem:
    error = probe.error or SourceError(None, "", "")
    code, message = error.code, error.message
    consent_url = admin_consent_url(tenant_id, spec.client_id, endpoints.authority)
    setting = spec.secret_setting or spec.certificate_setting
    if code in ("AADSTS7000229", "AADSTS65001"):
        return Problem("consent", f"Admin consent is missing in tenant {tenant_id}: the app {spec.client_id} has no "
                       "service principal there (never consented, or the enterprise app was deleted).",
                       f"A Global Administrator of the tenant opens {consent_url} and accepts.", (probe.name,))
    if code == "AADSTS700016":
        # Entra cannot resolve the app id at all (wrong id, deleted registration, wrong tenant or cloud); older
        # Entra answered a missing service principal this way too, so the consent link is the second step.
        return Problem("consent", f"Entra does not know the app {spec.client_id} in tenant {tenant_id}.",
                       "Check the client id (AUTHWATCH_APP_CLIENT_ID / --client-id) and that the app registration "
                       f"still exists in your tenant; if both are right, the tenant's admin consents at {consent_url}.",
                       (probe.name,))
    if code == "AADSTS7000112":
        return Problem("consent", f"The app is disabled in tenant {tenant_id}.",
                       "The tenant's admin enables the enterprise application (Enterprise applications > the app > "
                       "Properties > Enabled for users to sign in: Yes).", (probe.name,))
    if code == "AADSTS90002":
        return Problem("tenant", f"No tenant {tenant_id} exists (in this cloud).",
                       "Check the tenant id (Entra admin center > Overview > Tenant ID).", (probe.name,))
    if code == "AADSTS70021":
        return Problem("credential", "The app has no federated credential that matches the managed identity.",
                       "Add it (once per deployment): " + federated_credential_command(spec.client_id, endpoints),
                       (probe.name,))
    if code in ("AADSTS7000215", "AADSTS7000222", "AADSTS7000218"):
        return Problem("credential", f"The client secret was refused ({message}).",
                       f"Create a new client secret on the app and put it in app setting {setting} (a Key Vault "
                       "reference). Better: switch the tenant to credential mode federated (no secret).",
                       (probe.name,))
    if code in ("AADSTS700027", "AADSTS700024"):
        return Problem("credential", f"The client assertion was refused ({message}).",
                       "certificate mode: upload the certificate in the app setting "
                       f"{setting} to the app registration (Certificates & secrets) and check its validity; federated "
                       "mode: check the machine's clock and that the assertion comes from the managed identity.",
                       (probe.name,))
    if spec.mode == "federated" and ("ManagedIdentity" in code or "CredentialUnavailable" in code
                                     or "managed identity" in message.lower()):
        return Problem("credential", "No managed identity is available where this check runs, so the federated "
                       "credential cannot be used here.",
                       "The federated credential works where the managed identity is: run the check in the "
                       "function app's environment, or provide an assertion with AZURE_FEDERATED_TOKEN_FILE; "
                       "`--skip-check` registers without checking.", (probe.name,))
    return Problem("credential", f"Signing in to tenant {tenant_id} failed: {code}: {message}",
                   "Fix the credential the message names; an AADSTS code is explained at "
                   "https://login.microsoftonline.com/error?code=<number>.", (probe.name,))


def diagnose(tenant_id: str, spec: CredentialSpec, endpoints: MicrosoftEndpoints, probes: list[Probe]) -> list[Problem]:
    """Turn failed probes into problems, one per missing thing (a permission missing for two sources is one)."""
    problems: list[Problem] = []
    missing: dict[str, list[str]] = {}  # Graph permission label -> sources
    licence: list[str] = []
    for probe in probes:
        error = probe.error
        if error is None:
            continue
        if probe.name == "credential":
            problems.append(Problem("credential", f"The tenant's credential cannot be built: {error.message}",
                                    "Set the app setting it names (on Azure: a Key Vault reference), or use "
                                    "credential mode federated.", (probe.name,)))
        elif probe.name.startswith("token."):
            problem = _token_problem(probe, tenant_id, spec, endpoints)
            if all(problem.summary != known.summary for known in problems):
                problems.append(problem)
        elif probe.name.startswith("graph."):
            if error.status == 403 and error.code == LICENCE_ERROR_CODE:
                licence.append(probe.name)
            elif is_permission_refusal(error):
                for label in _refused_permissions(probe.name, error):
                    missing.setdefault(label, []).append(probe.name)
            elif error.status == 401:
                problems.append(Problem("consent", f"Graph rejected the app's token for {probe.name} (401): the "
                                        "consent was probably revoked.", "The tenant's admin consents again at "
                                        f"{admin_consent_url(tenant_id, spec.client_id, endpoints.authority)}.",
                                        (probe.name,)))
            else:
                problems.append(_other(probe))
        elif probe.name.startswith("exchange."):
            if error.status == 401:
                permission = manifest.EXCHANGE_MANAGE_AS_APP
                problems.append(Problem(
                    "exchange_permission", "Exchange Online refused the app (401): the application permission "
                    "Exchange.ManageAsApp is not granted in this tenant.",
                    f"Add the Office 365 Exchange Online application permission Exchange.ManageAsApp (app "
                    f"{permission.resource_app_id}, role {permission.id}) to the app registration {spec.client_id}, "
                    + _reconsent(tenant_id, spec, endpoints) + ".", (probe.name,), permission=permission.label))
            elif error.status == 403:
                problems.append(Problem(
                    "exchange_role", "Exchange Online refused the app (403): its service principal holds no Exchange "
                    "role in this tenant (Exchange.ManageAsApp alone is not enough).",
                    "An Exchange Administrator of the tenant gives it the read-only roles through a role group: "
                    + " ; ".join(exchange_role_commands(tenant_id, spec.client_id))
                    + ". Fallback: assign the Entra role Global Reader: "
                    + " && ".join(role_assignment_commands(tenant_id, spec.client_id, endpoints.graph)),
                    (probe.name,), permission=manifest.VIEW_ONLY_CONFIGURATION.label))
            else:
                problems.append(_other(probe))
    graph_probes = [probe for probe in probes if probe.name.startswith("graph.")]
    if len(graph_probes) > 1 and all(is_permission_refusal(probe.error) for probe in graph_probes):
        # Every Graph source refused: the token carries no app role at all. That is consent revoked with the service
        # principal kept (tokens are then issued without a roles claim, "app-only tokens can be issued without a
        # roles claim", https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow),
        # not one permission after another missing.
        missing.clear()
        problems.append(Problem(
            "consent", f"Every Microsoft Graph source refused the app in tenant {tenant_id}: its service principal is "
            "there but holds no permission (admin consent was revoked, or given before the permissions were added).",
            f"A Global Administrator of the tenant opens "
            f"{admin_consent_url(tenant_id, spec.client_id, endpoints.authority)} and accepts.", tuple(probe.name for probe in graph_probes)))
    for label, sources in missing.items():
        permission = manifest.BY_LABEL[label]
        problems.append(Problem(
            "graph_permission", f"Microsoft Graph refused {', '.join(sources)}: "
            f"the application permission {permission.name} is not granted in this tenant.",
            f"Add the Microsoft Graph application permission {permission.name} (role {permission.id}) to the app "
            f"registration {spec.client_id} (`authwatch permissions --format app-registration` lists them all), "
            + _reconsent(tenant_id, spec, endpoints) + ".", tuple(sources), permission=label))
    if licence:
        problems.append(Problem(
            "licence", f"The tenant has no {manifest.SIGNIN_LICENCE} licence, so Graph serves no sign-in logs "
                       f"({', '.join(licence)}).",
            "Nothing blocks monitoring: the sign-in based control reports not_applicable. With a "
            f"{manifest.SIGNIN_LICENCE} licence in the tenant, it works.",
            tuple(licence), blocking=False))
    return problems


def _refused_permissions(source: str, error: SourceError) -> tuple[str, ...]:
    """The source's permissions that a refusal is about: the ones its message names (the reports API names what it
    misses), else all of them."""
    needed = manifest.BY_SOURCE[source].permissions
    named = tuple(label for label in needed if label in error.message)
    if error.code == "Authentication_ApplicationHasNoDirectoryReadAccess":
        named = (manifest.DIRECTORY_READ.label,)
    return named or needed


def _other(probe: Probe) -> Problem:
    error = probe.error or SourceError(None, "", "")
    transient = error.status is None or error.status == 429 or error.status >= 500
    what = f"{error.status or 'no answer'} {error.code}: {error.message}".strip()
    if transient:
        return Problem("unverified", f"{probe.name} could not be checked ({what}).",
                       "Try again in a few minutes (throttling or an outage); `--force` registers anyway.",
                       (probe.name,))
    return Problem("source", f"{probe.name} answered {what}.",
                   "authwatch will report the controls that read it as unknown until it answers.",
                   (probe.name,), blocking=False)


def render_text(check: AccessCheck) -> list[str]:
    """The check as lines for people."""
    lines = [f"  {'ok  ' if probe.ok else 'FAIL'}  {probe.name}"
             + ("" if probe.ok or probe.error is None
                else f"  ({probe.error.status or '-'} {probe.error.code}: {probe.error.message})")
             for probe in check.probes]
    for problem in check.problems:
        lines.append("")
        lines.append(f"  {'MISSING' if problem.blocking else 'NOTE'} ({problem.kind}): {problem.summary}")
        lines.append(f"    fix: {problem.fix}")
    return lines
