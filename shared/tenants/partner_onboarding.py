"""Onboard an MSP's customers in bulk through GDAP: consent, app roles, the Exchange read role, the access check.

For each selected customer, in order, every step repeatable (a step already done answers "already"):
  1. the relationship grants what onboarding needs (gdap.py), else `lacks_role`, no call made;
  2. Partner Center admin consent: the app's service principal in the customer, with the delegated Graph scopes the
     next steps use (CIPP's order: Set-CIPPCPVConsent, then Add-CIPPApplicationPermission);
  3. the app's application permissions (the manifest's customer app roles), granted as app role assignments;
  4. Global Reader for the app's service principal: the Entra role Exchange accepts for app-only reads
     (https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2) — else `missing_exchange_role`;
  5. the existing end-to-end access check, app-only, as the collector reads; `ready` customers are registered.
The record is written `in_progress` before the first call and with the outcome after the last, so a crash leaves
a record a re-run resumes from, and nothing is registered that was not checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from shared.collect.operator import OperatorSignInError
from shared.collect.partner import PartnerCallError, PartnerClient
from shared.tenants.gdap import GLOBAL_READER, Customer
from shared.tenants.onboarding import AccessCheck
from shared.tenants.onboarding_records import OnboardingRecord
from shared.tenants.permissions import Permission, customer_permissions

# Delegated Graph scopes the consent grants for steps 3-5: read the service principals, assign app roles, assign a
# directory role, and withdraw these grants at the end (the least each call documents: serviceprincipal-post-
# approleassignedto, rbacapplication-post-roleassignments, oauth2permissiongrant-delete). A ready customer is left
# with the read-only app roles and Global Reader only: no delegated grant, so nothing in it can write through the app.
CONSENT_SCOPES = ("Application.Read.All,AppRoleAssignment.ReadWrite.All,RoleManagement.ReadWrite.Directory,"
                  "DelegatedPermissionGrant.ReadWrite.All")
GRAPH_RESOURCE = "00000003-0000-0000-c000-000000000000"
SP_WAIT_S, SP_POLL_S = 30.0, 2.0  # a new service principal can take seconds to be readable (CIPP waits and retries)
DEFAULT_CONCURRENCY = 4

Check = Callable[[str], Awaitable[AccessCheck]]
Register = Callable[[Customer], Awaitable[None]]
Progress = Callable[[int, int, OnboardingRecord], None]


class _Stop(Exception):
    def __init__(self, state: str, fix: str, detail: str = "") -> None:
        super().__init__(detail or fix)
        self.state, self.fix, self.detail = state, fix, detail


def _relationship_fix(customer: Customer, roles: Sequence[str]) -> str:
    return (f"Add {' and '.join(roles)} to the GDAP relationship with {customer.name} (Partner Center > Customers > "
            f"{customer.name} > Admin relationships), assign it to the security group you sign in with, then run "
            f"`authwatch tenants onboard --tenant {customer.tenant_id}` again.")


def _group_fix(customer: Customer, role: str) -> str:
    return (f"Give {role} to the security group you sign in with, in the GDAP relationship with {customer.name} "
            f"(Partner Center > Customers > {customer.name} > Admin relationships > the relationship > Security "
            f"groups): the relationship grants it, your group does not; then run `authwatch tenants onboard --tenant "
            f"{customer.tenant_id}` again.")


def _role_fix(customer: Customer, client_id: str) -> str:
    return (f"Give the app ({client_id}) Global Reader in {customer.name} (Entra admin center > Roles and "
            "administrators > Global Reader > Add assignments), or to the least-privilege Exchange role group "
            f"(`authwatch tenants add --check-only --tenant {customer.tenant_id} --name NAME` prints its commands), "
            "then run "
            f"`authwatch tenants onboard --tenant {customer.tenant_id}` again.")


async def _service_principal(client: PartnerClient, customer: Customer, app_id: str,
                             sleep: Callable[[float], Awaitable[None]]) -> dict[str, Any]:
    waited = 0.0
    while True:
        found = await client.service_principal(customer.tenant_id, app_id)
        if found is not None and isinstance(found.get("id"), str):
            return found
        if waited >= SP_WAIT_S:
            raise _Stop("failed", f"Run `authwatch tenants onboard --tenant {customer.tenant_id}` again in a few "
                        "minutes.", f"the consent succeeded but the app's service principal was not readable "
                        f"within {SP_WAIT_S:g} s")
        await sleep(SP_POLL_S)
        waited += SP_POLL_S


async def _grant_app_roles(client: PartnerClient, customer: Customer, principal_id: str,
                           steps: dict[str, str]) -> None:
    by_resource: dict[str, list[Permission]] = {}
    for permission in customer_permissions():
        if permission.kind == "application" and permission.resource_app_id:
            by_resource.setdefault(permission.resource_app_id, []).append(permission)
    held = {item.get("appRoleId") for item in await client.app_role_assignments(customer.tenant_id, principal_id)}
    for resource_app_id, permissions in by_resource.items():
        resource = await client.service_principal(customer.tenant_id, resource_app_id)
        if resource is None:
            raise _Stop("failed", "Open a support case with Microsoft: the tenant lacks a first-party service "
                        "principal.", f"{permissions[0].resource} has no service principal in the tenant")
        offered = {role.get("value"): role.get("id") for role in resource.get("appRoles") or []
                   if isinstance(role, dict)}
        for permission in permissions:
            role_id = offered.get(permission.name)
            if not isinstance(role_id, str):  # fail closed: a role Microsoft does not offer is never assumed granted
                raise _Stop("failed", "Update authwatch: its permissions manifest names an app role this tenant's "
                            f"{permission.resource} does not offer.", f"{permission.resource} offers no app role "
                            f"{permission.name}")
            if role_id in held:
                steps[permission.name] = "already"
                continue
            granted = await client.assign_app_role(customer.tenant_id, principal_id, resource["id"], role_id,
                                                   permission.name)
            steps[permission.name] = "created" if granted.created else "already"


async def onboard_customer(customer: Customer, client: PartnerClient, *, app_id: str, app_name: str,
                           check: Check, register: Register, now: datetime,
                           sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> OnboardingRecord:
    """One customer through every step; the record says where it ended. Never raises for Microsoft's refusals."""
    steps: dict[str, str] = {}

    def record(state: str, fix: str = "", detail: str = "") -> OnboardingRecord:
        return OnboardingRecord(customer.tenant_id, customer.name, state, fix, detail, dict(steps), now)

    if customer.ended or not customer.active:
        return record("relationship_ended" if customer.ended else "failed",
                      "Ask the customer to approve a GDAP relationship with the roles authwatch needs.",
                      "no active GDAP relationship with this customer")
    if customer.missing_roles:
        return record("lacks_role", _relationship_fix(customer, customer.missing_roles),
                      f"the relationship lacks {', '.join(customer.missing_roles)}")
    try:
        consent = await client.grant_consent(customer.tenant_id, app_id, {GRAPH_RESOURCE: CONSENT_SCOPES}, app_name)
        steps["consent"] = "created" if consent.created else "already"
        principal = await _service_principal(client, customer, app_id, sleep)
        try:
            await _grant_app_roles(client, customer, principal["id"], steps)
        except PartnerCallError as error:
            if error.status == 403:  # the relationship lists the role (checked above): the group given it does not
                raise _Stop("lacks_role", _group_fix(customer, "Privileged Role Administrator"),
                            f"Microsoft refused an app role grant: {error}") from None
            raise
        try:
            granted = await client.assign_directory_role(customer.tenant_id, principal["id"], GLOBAL_READER,
                                                         "Global Reader")
            steps["Global Reader"] = "created" if granted.created else "already"
        except PartnerCallError as error:
            if not error.refused:
                raise
            steps["Global Reader"] = "failed"
            raise _Stop("missing_exchange_role", _role_fix(customer, app_id),
                        f"Microsoft refused the Global Reader assignment: {error}") from None
    except _Stop as stop:
        return record(stop.state, stop.fix, stop.detail)
    except PartnerCallError as error:
        step = error.step
        fix = ("Make sure the account you sign in with is in your AdminAgents group and in the security group the "
               "relationship's roles are assigned to; then run the onboarding again."
               if error.refused else "Run the onboarding again; the steps already done are not repeated.")
        return record("failed", fix, f"{step} failed: {error}")
    except OperatorSignInError as error:  # your token for this customer (AADSTS50020, 53003, 65001, …)
        if error.tenant_id is None:
            raise  # the partner tenant's (Partner Center's) token: nothing about this customer; the run stops
        return record("failed", "Entra refused your sign-in to this customer: check that your account is in the "
                      "security group of the GDAP relationship, that no Conditional Access policy of the customer "
                      "blocks it, and that the app's Partner Center consent succeeded; then run the onboarding "
                      "again.", str(error))
    async def withdraw() -> int:
        deleted = await client.withdraw_delegated_grants(customer.tenant_id, principal["id"])
        steps["withdraw delegated grants"] = "done" if deleted else "already"
        return deleted

    return await _checked(customer, record, check, register, app_id, withdraw)


async def _checked(customer: Customer, record: Callable[..., OnboardingRecord], check: Check, register: Register,
                   app_id: str, withdraw: Callable[[], Awaitable[int]]) -> OnboardingRecord:
    result = await check(customer.tenant_id)
    blocking = [problem for problem in result.problems if problem.blocking]
    if blocking and all(problem.kind in ("exchange_role", "exchange_permission") for problem in blocking):
        return record("missing_exchange_role", _role_fix(customer, app_id) + " A role just given can take up to "
                      "an hour to reach Exchange Online.", "; ".join(problem.summary for problem in blocking))
    if blocking:
        return record("failed", blocking[0].fix, "; ".join(problem.summary for problem in blocking))
    await register(customer)
    try:
        await withdraw()
    except Exception as error:  # noqa: BLE001 - registered and working: ready, with the leftover grant named
        return record("ready", f"Remove authwatch's delegated permissions in {customer.name} (Entra admin center > "
                      "Enterprise applications > authwatch > Permissions): onboarding could not withdraw them.",
                      f"withdrawing the delegated grants failed: {type(error).__name__}: {str(error)[:300]}")
    return record("ready")


async def onboard_all(selected: Sequence[Customer], onboard: Callable[[Customer], Awaitable[OnboardingRecord]],
                      save: Callable[[OnboardingRecord], Awaitable[None]], *, now: datetime,
                      concurrency: int = DEFAULT_CONCURRENCY, progress: Progress | None = None) -> list[OnboardingRecord]:
    """Every selected customer, `concurrency` at a time; each one's record saved `in_progress` first and with its
    outcome after, so a run that stops part-way is finished by running it again. Raises OperatorSignInError when
    the operator's own (partner tenant) sign-in fails."""
    gate = asyncio.Semaphore(max(1, concurrency))
    done: list[OnboardingRecord] = []

    async def one(customer: Customer) -> OnboardingRecord:
        async with gate:
            await save(OnboardingRecord(customer.tenant_id, customer.name, "in_progress", updated_at=now))
            try:
                outcome = await onboard(customer)
            except OperatorSignInError:
                raise  # your own sign-in failed: every customer would fail the same way
            except Exception as error:  # noqa: BLE001 - one customer's surprise must not stop the others
                outcome = OnboardingRecord(customer.tenant_id, customer.name, "failed",
                                           "Run the onboarding again; report this if it repeats.",
                                           f"unexpected {type(error).__name__}: {str(error)[:300]}", {}, now)
            await save(outcome)
            done.append(outcome)
            if progress is not None:
                progress(len(done), len(selected), outcome)
            return outcome

    # Your own sign-in failing (the only error `one` lets through) stops the run: the customers not yet finished
    # keep their `in_progress` record, which the next run resumes.
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(customer)) for customer in selected]
    except* OperatorSignInError as failures:
        raise failures.exceptions[0] from None
    return [task.result() for task in tasks]
