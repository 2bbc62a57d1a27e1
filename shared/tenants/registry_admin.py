"""Fleet administration on the registry: enable / disable idempotently, remove a tenant (its history kept, or purged
in bounded batches), and what the operator withdraws in the customer tenant afterwards.

Removing. The registry (shared/tenants/registry.py) never deletes a row on its own; `TenantRemoval.remove` is the one
place that does. It raises the tenant's change marker first (the same rule as every registry change: a queue worker
holding an older message reads the registry again and finds no tenant, so it skips), then deletes the row if it is
still the one read (ETag). With `purge`, the tenant is first disabled (a worker skips it from then on), its
partitions in the tables it names are deleted in Table transactions of up to 100 rows (one partition each), and only
then the registry row: a purge that stops part-way leaves a registered, disabled tenant, and running the removal
again finishes it. The change marker row itself is kept: without it a stale queued message would evaluate the tenant
again from the configuration it carries (shared/cycle/fleet.py trusts a message no older than the marker).
  https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions (100 operations, one
  partition, all or nothing)  https://learn.microsoft.com/rest/api/storageservices/delete-entity1 (If-Match)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError
from azure.data.tables.aio import TableServiceClient

from shared.storage.account import StorageAccount, account
from shared.storage.tenant_store import REGISTRY_ROW
from shared.storage.tenant_store import TABLE as STATE_TABLE
from shared.storage.tenant_store import mark_registry_change
from shared.tenants import onboarding
from shared.tenants import permissions as manifest
from shared.tenants.config import TenantConfig, tenant_key
from shared.tenants.registry import PARTITION, TABLE, WRITE_ATTEMPTS, TenantRegistry

log = logging.getLogger("authwatch.registry")

PURGE_BATCH = 100  # an entity group transaction's limit
MAX_PURGE_ROWS = 1_000_000  # per table: a tenant's history is pruned by age long before this (bounded loop)


async def set_enabled(registry: TenantRegistry, tenant_id: str, enabled: bool) -> tuple[TenantConfig, bool]:
    """Enable or disable a tenant; (the tenant, whether anything changed). Already so: nothing is written, so the
    row, its ConfigVersion and its updatedAt stay as they were. LookupError when the tenant is unknown."""
    key = tenant_key(tenant_id)
    config = await registry.get(key)
    if config is None:
        raise LookupError(f"no tenant {key} is registered")
    if config.enabled == enabled:
        return config, False
    return await registry.update(key, {"enabled": enabled}), True


class TenantRemoval:
    """Taking tenants out of the registry: the row, and on request the tenant's partitions in other tables."""

    def __init__(self, service: TableServiceClient) -> None:
        self._service = service
        self._registry = service.get_table_client(TABLE)
        self._markers = service.get_table_client(STATE_TABLE)

    @classmethod
    def from_connection_string(cls, connection: str | StorageAccount) -> TenantRemoval:
        return cls(account(connection).table_service())

    async def remove(self, registry: TenantRegistry, tenant_id: str, *,
                     purge_tables: Sequence[str] = ()) -> tuple[TenantConfig, dict[str, int]]:
        """Remove a tenant from the registry; with `purge_tables`, delete its partition in each of them first (the
        state table's change marker excepted). Returns the tenant as it was and the rows deleted per table.
        LookupError when the tenant is not registered."""
        key = tenant_key(tenant_id)
        config = await registry.get(key)
        if config is None:
            raise LookupError(f"no tenant {key} is registered")
        deleted: dict[str, int] = {}
        if purge_tables:
            await set_enabled(registry, key, False)  # workers skip it while its history goes
            for table in purge_tables:
                deleted[table] = await self.purge(table, key)
        await self._delete_row(key)
        log.info("tenant removed", extra={"tenant_id": key, "purged": deleted})
        return config, deleted

    async def _delete_row(self, key: str) -> None:
        for _ in range(WRITE_ATTEMPTS):
            try:
                entity = await self._registry.get_entity(PARTITION, key)
            except ResourceNotFoundError:
                return  # removed meanwhile: what was asked
            # Marker first (shared/tenants/registry.py): a worker with an older message reads the registry again.
            await mark_registry_change(self._markers, key, int(entity.get("ConfigVersion") or 0) + 1)
            try:
                await self._registry.delete_entity(PARTITION, key, etag=entity.metadata["etag"],
                                                   match_condition=MatchConditions.IfNotModified)
                return
            except ResourceModifiedError:
                continue  # written meanwhile (an outcome, a lease): read again
            except ResourceNotFoundError:
                return
        raise RuntimeError(f"tenant {key}: the registry row kept changing; gave up after {WRITE_ATTEMPTS} attempts")

    async def purge(self, table_name: str, tenant_id: str) -> int:
        """Delete the tenant's partition in `table_name` (the change marker kept), in transactions of up to 100
        rows; returns how many rows went. RuntimeError past MAX_PURGE_ROWS (run it again to go on)."""
        key = tenant_key(tenant_id)
        table = self._service.get_table_client(table_name)
        deleted = 0
        batch: list[tuple[str, dict[str, Any]]] = []
        try:
            async for entity in table.query_entities("PartitionKey eq @tenant", parameters={"tenant": key},
                                                     select=["PartitionKey", "RowKey"]):
                if table_name == STATE_TABLE and entity["RowKey"] == REGISTRY_ROW:
                    continue
                if deleted + len(batch) >= MAX_PURGE_ROWS:
                    raise RuntimeError(f"tenant {key}: more than {MAX_PURGE_ROWS:,} rows in {table_name}; "
                                       f"{deleted:,} deleted, run the removal again to go on")
                batch.append(("delete", {"PartitionKey": key, "RowKey": entity["RowKey"]}))
                if len(batch) == PURGE_BATCH:
                    deleted += await _submit(table, batch)
                    batch = []
            if batch:
                deleted += await _submit(table, batch)
        except ResourceNotFoundError:
            pass  # the table was never created: nothing to delete
        finally:
            await table.close()
        return deleted

    async def close(self) -> None:
        await self._registry.close()
        await self._markers.close()
        await self._service.close()

    async def __aenter__(self) -> TenantRemoval:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


async def _submit(table: Any, operations: list[tuple[str, dict[str, Any]]]) -> int:
    """One transaction of deletes; a row gone meanwhile (404 at a known index) is dropped and the rest sent again."""
    operations = list(operations)
    while operations:
        try:
            await table.submit_transaction(operations)
            return len(operations)
        except TableTransactionError as error:
            if error.status_code != 404 or not 0 <= getattr(error, "index", -1) < len(operations):
                raise
            del operations[error.index]
    return 0


# -- what to withdraw in the customer tenant --------------------------------------------------------------------------

def withdrawal_steps(config: TenantConfig, graph_url: str, *, authority: str = "https://login.microsoftonline.com",
                     others: Sequence[TenantConfig] = (), operator_tenant: str | None = None) -> list[onboarding.Step]:
    """What the customer tenant's admins undo after a removal: the reverse of `onboarding.onboarding_steps`, with
    the same role group, role and commands `tenants add` printed (Exchange first: its cmdlets find the app by its
    service principal, which goes last). `others`: the tenants still registered (is a credential still in use?)."""
    tenant, client = config.tenant_id, config.credential.client_id
    group = manifest.EXCHANGE_ROLE_GROUP
    login, find_sp = onboarding.role_assignment_commands(tenant, client, graph_url)[:2]
    base = graph_url.rstrip("/")
    steps = [
        # https://learn.microsoft.com/powershell/module/exchange/remove-rolegroupmember
        # https://learn.microsoft.com/powershell/module/exchange/remove-serviceprincipal
        onboarding.Step(
            "Exchange read access for the app", "an Exchange Administrator of the tenant", "per tenant",
            f'Take the app\'s service principal out of the role group "{group}" and out of Exchange Online; remove '
            "the role group too when nothing else is in it.",
            (onboarding.exchange_role_commands(tenant, client)[1],
             f'Remove-RoleGroupMember -Identity "{group}" -Member (Get-ServicePrincipal -Identity "authwatch").Identity'
             " -Confirm:$false",
             'Remove-ServicePrincipal -Identity "authwatch" -Confirm:$false',
             f'Remove-RoleGroup -Identity "{group}" -Confirm:$false  # only if no other member is left')),
        # https://learn.microsoft.com/graph/api/rbacapplication-list-roleassignments?view=graph-rest-1.0 ($filter)
        # https://learn.microsoft.com/graph/api/unifiedroleassignment-delete?view=graph-rest-1.0
        onboarding.Step(
            f"The Entra role {manifest.GLOBAL_READER.name} (if it was assigned instead of the role group)",
            "a Privileged Role Administrator of the tenant", "per tenant",
            f"List the app's role assignments and delete the {manifest.GLOBAL_READER.name} one "
            f"(roleDefinitionId {manifest.GLOBAL_READER.id}).",
            (login, find_sp,
             f'az rest --method GET --url "{base}/roleManagement/directory/roleAssignments?\\$filter=principalId eq '
             f"'$sp'\" --query \"value[?roleDefinitionId=='{manifest.GLOBAL_READER.id}'].id\" -o tsv",
             f"az rest --method DELETE --url {base}/roleManagement/directory/roleAssignments/<the id printed above>")),
        # https://learn.microsoft.com/cli/azure/ad/sp#az-ad-sp-delete
        # https://learn.microsoft.com/entra/identity/enterprise-apps/delete-application-portal
        onboarding.Step(
            "Admin consent (the app's enterprise application)",
            "a Global Administrator (or Cloud Application Administrator) of the tenant", "per tenant",
            "Delete the app's service principal in the tenant: it withdraws the consent given at "
            f"{onboarding.admin_consent_url(tenant, client, authority)} (every permission the app was granted "
            "there) and the app can no longer sign in to the tenant.",
            (login, f"az ad sp delete --id {client}")),
    ]
    if operator_tenant and operator_tenant.lower() == tenant:
        steps[-1] = onboarding.Step(steps[-1].title, steps[-1].who, steps[-1].scope,
                                    "This is your own tenant, where the app registration lives: keep its enterprise "
                                    "application while authwatch watches other tenants.")
    elif GDAP_TAG in config.tags:
        steps = _through_gdap(steps, tenant, client, operator_tenant)
    steps.append(_credential_step(config, others))
    return steps


GDAP_TAG = "gdap"  # what `authwatch tenants discover` registers a customer with


def _through_gdap(steps: list[onboarding.Step], tenant: str, client: str,
                  operator_tenant: str | None) -> list[onboarding.Step]:
    """A customer onboarded through GDAP got Global Reader and its consent from Partner Center: both can be withdrawn
    from your side, through the same relationship. The Exchange role group step stays, for a customer moved to it."""
    exchange, role, consent = steps
    # https://learn.microsoft.com/partner-center/developer/control-panel-vendor-apis (Remove consent): a Partner
    # Center token is your partner tenant's, so this is its own step, signed in there.
    revoke = onboarding.Step(
        "Or, from your partner tenant: withdraw the Partner Center consent", "you (AdminAgents) in Partner Center",
        consent.scope, "Instead of deleting the enterprise application in the customer tenant, withdraw the consent "
        "onboarding gave through Partner Center's consent API.",
        (f"az login --tenant {operator_tenant or '<your partner tenant id>'} --allow-no-subscriptions",
         f"az rest --method DELETE --resource https://api.partnercenter.microsoft.com --url "
         f"https://api.partnercenter.microsoft.com/v1/customers/{tenant}/applicationconsents/{client}"))
    return [
        onboarding.Step(exchange.title + " — only if you moved it to the role group instead of Global Reader",
                        exchange.who, exchange.scope, exchange.text, exchange.commands),
        onboarding.Step(f"The Entra role {manifest.GLOBAL_READER.name}",
                        "you, through GDAP (Privileged Role Administrator), or a Privileged Role Administrator of "
                        "the tenant", role.scope, f"Onboarding through GDAP gave the app {manifest.GLOBAL_READER.name}"
                        f": delete that role assignment (roleDefinitionId {manifest.GLOBAL_READER.id}).",
                        role.commands),
        consent,
        revoke,
    ]


def _credential_step(config: TenantConfig, others: Sequence[TenantConfig]) -> onboarding.Step:
    spec = config.credential
    if spec.mode == "federated":
        return onboarding.Step(
            "Federated credential", "nobody", "once per deployment",
            "Nothing to withdraw for this tenant: the federated credential belongs to the app registration in your "
            "own tenant and serves every tenant. Delete it only when you retire authwatch.")
    setting = spec.secret_setting if spec.mode == "secret" else spec.certificate_setting
    users = [other for other in others if other.tenant_id != config.tenant_id
             and setting in (other.credential.secret_setting, other.credential.certificate_setting)]
    if users:
        return onboarding.Step(f"App setting {setting}", "nobody", "per credential",
                               f"Keep it: {len(users)} other registered tenant(s) still sign in with it.")
    kind = "client secret" if spec.mode == "secret" else "certificate"
    return onboarding.Step(
        f"App setting {setting}", "the operator", "per credential",
        f"No other registered tenant uses it: delete the app setting and the Key Vault secret behind it, and remove "
        f"the {kind} from the app registration if nothing else signs in with it.",
        (f"az functionapp config appsettings delete -g <resource group> -n <function app> --setting-names {setting}",))
