"""MSP onboarding as one service: discover the partner's customers, onboard the selected ones, report offboarding.

`discover` reads the partner's GDAP relationships and customers, marks which customers are watched, and reports —
once — a watched customer whose relationships have all ended (its record keeps when it was reported).
`onboard` runs partner_onboarding over the selected customers and registers the ready ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from shared.collect.endpoints import MicrosoftEndpoints
from shared.collect.operator import OperatorSignIn, Prompt
from shared.collect.partner import GRAPH_SCOPE, PartnerClient
from shared.storage.account import StorageAccount
from shared.tenants.config import TenantConfig, TenantExists
from shared.tenants.gdap import Customer, customers
from shared.tenants.onboarding import AccessCheck
from shared.tenants.onboarding_records import OnboardingRecord, OnboardingRecords
from shared.tenants.partner_onboarding import DEFAULT_CONCURRENCY, Progress, onboard_all, onboard_customer
from shared.tenants.registry import TenantRegistry


@dataclass
class PartnerSession:
    """The operator signed in, the onboarding client over their tokens, the registry and the records."""

    operator: OperatorSignIn
    client: PartnerClient
    registry: TenantRegistry
    records: OnboardingRecords


@asynccontextmanager
async def partner_session(client_id: str, partner_tenant: str, endpoints: MicrosoftEndpoints, storage: StorageAccount,
                          prompt: Prompt) -> AsyncIterator[PartnerSession]:
    """Open everything an onboarding run uses and sign the operator in (the one prompt); close it all after."""
    operator = OperatorSignIn(client_id, partner_tenant, endpoints, prompt)
    session = PartnerSession(operator, PartnerClient(endpoints, operator.token),
                             TenantRegistry(storage.table_service()), OnboardingRecords(storage.table_service()))
    try:
        await session.registry.create()
        await operator.sign_in(GRAPH_SCOPE)
        yield session
    finally:
        await session.client.aclose()
        operator.close()
        await session.records.close()
        await session.registry.close()


@dataclass
class Discovery:
    customers: list[Customer]
    records: dict[str, OnboardingRecord] = field(default_factory=dict)
    ended_now: list[Customer] = field(default_factory=list)  # reported by this discovery, never again

    def to_json(self) -> dict[str, Any]:
        return {"customers": [{**customer.to_json(),
                               "onboarding": self.records[customer.tenant_id].to_json()
                               if customer.tenant_id in self.records else None} for customer in self.customers],
                "endedNow": [customer.tenant_id for customer in self.ended_now]}


def ended_fix(customer: Customer) -> str:
    return (f"The GDAP relationship with {customer.name} has ended, so authwatch's access may end too: renew the "
            f"relationship, or stop watching with `authwatch tenants remove {customer.tenant_id}` (it says what to "
            "withdraw in the customer tenant).")


async def discover(client: PartnerClient, registry: TenantRegistry, records: OnboardingRecords, *,
                   now: datetime) -> Discovery:
    relationships, listed, watched, stored = await asyncio.gather(
        client.relationships(), client.customers(), registry.list(), records.all())
    found = customers(relationships, [config.tenant_id for config in watched], now=now)
    known = {customer.tenant_id for customer in found}
    watched_ids = {config.tenant_id for config in watched}
    for item in listed:  # a customer Graph lists whose relationships could not be read: shown, never onboarded
        tenant_id = str(item.get("tenantId") or "").lower()
        if tenant_id and tenant_id not in known:
            found.append(Customer(tenant_id, str(item.get("displayName") or tenant_id), (),
                                  watched=tenant_id in watched_ids, now=now))
    discovery = Discovery(found, {record.tenant_id: record for record in stored})
    for customer in found:
        record = discovery.records.get(customer.tenant_id)
        if record is not None and record.state == "relationship_ended" and customer.active:
            # Renewed: no longer ended, and a next ending is reported again. Watched: ready (its own consent and roles
            # never depended on the relationship); not watched any more: just a customer to onboard, no record.
            if customer.watched:
                renewed = OnboardingRecord(customer.tenant_id, customer.name, "ready", "",
                                           "the GDAP relationship was renewed", record.steps, now)
                await records.save(renewed)
                discovery.records[customer.tenant_id] = renewed
            else:
                await records.forget(customer.tenant_id)
                del discovery.records[customer.tenant_id]
            continue
        if customer.watched and customer.ended and (record is None or record.ended_reported_at is None):
            ended = OnboardingRecord(customer.tenant_id, customer.name, "relationship_ended", ended_fix(customer),
                                     "every GDAP relationship with this customer has ended",
                                     record.steps if record else {}, now, ended_reported_at=now)
            await records.save(ended)
            discovery.records[customer.tenant_id] = ended
            discovery.ended_now.append(customer)
    return discovery


async def onboard(selected: Sequence[Customer], client: PartnerClient, registry: TenantRegistry,
                  records: OnboardingRecords, *, app_id: str, app_name: str, config_for: Callable[[Customer], TenantConfig],
                  check: Callable[[TenantConfig], Awaitable[AccessCheck]], now: datetime,
                  concurrency: int = DEFAULT_CONCURRENCY, progress: Progress | None = None) -> list[OnboardingRecord]:
    """Onboard every selected customer (bounded concurrency) and register the ready ones.

    A customer already registered is checked with its stored configuration (what the monitor will use), never with
    one built from this run's options; a customer whose configuration cannot be built (a name the registry refuses)
    is `failed` with why, before any call. A record's `EndedReportedAt` survives the attempt while the relationship
    stays ended, so an ended relationship is still reported only once."""
    configs: dict[str, TenantConfig] = {}
    refused: dict[str, str] = {}
    for customer in selected:
        stored = await registry.get(customer.tenant_id)
        try:
            configs[customer.tenant_id] = stored or config_for(customer)
        except Exception as error:  # noqa: BLE001 - UsageError/RegistryError: this customer's, named in its record
            refused[customer.tenant_id] = str(error)[:500]
    previous = {customer.tenant_id: await records.get(customer.tenant_id) for customer in selected}

    async def register(customer: Customer) -> None:
        try:
            await registry.add(configs[customer.tenant_id], now=now)
        except TenantExists:
            pass  # registered by an earlier run (or by hand): it was checked with that configuration

    async def one(customer: Customer) -> OnboardingRecord:
        if customer.tenant_id in refused:
            return OnboardingRecord(customer.tenant_id, customer.name, "failed", "Fix the customer's entry (or the "
                                    "options) and run the onboarding again.", refused[customer.tenant_id], {}, now)
        outcome = await onboard_customer(customer, client, app_id=app_id, app_name=app_name,
                                         check=lambda _: check(configs[customer.tenant_id]), register=register,
                                         now=now)
        if outcome.state == "ready" and not configs[customer.tenant_id].enabled:
            return replace(outcome, fix=f"It is registered but disabled, so not evaluated: `authwatch tenants "
                           f"enable {customer.tenant_id}`.")
        return outcome

    async def save(record: OnboardingRecord) -> None:
        before = previous.get(record.tenant_id)
        if before is not None and before.ended_reported_at and record.ended_reported_at is None \
                and record.state in ("in_progress", "relationship_ended"):
            record = replace(record, ended_reported_at=before.ended_reported_at)
        await records.save(record)

    return await onboard_all(selected, one, save, now=now, concurrency=concurrency, progress=progress)
