"""Tenants named the way people name them: by id (GUID), display name or verified domain (`contoso.onmicrosoft.com`),
resolved through the registry. An unknown or ambiguous name is a usage error (exit 2) listing the candidates.

Domains match the verified domains the worker records on the registry row from each tenant's organization (Graph),
so a tenant is known by its domains from its first evaluation on.
"""

from __future__ import annotations

import asyncio
from typing import Any, Iterable, Mapping

from shared.cli.errors import UsageError

MAX_CANDIDATES = 10


def as_guid(raw: str) -> str | None:
    from shared.views.api import BadRequest, tenant_id_from

    try:
        return tenant_id_from(raw)
    except BadRequest:
        return None


def _domains(config: Any) -> set[str]:
    return set(getattr(config, "verified_domains", ()))


def match(raw: str, rows: Iterable[tuple[Any, Mapping[str, Any]]], flag: str = "--tenant") -> str:
    """The tenant id `raw` names among registry rows (config, entity); UsageError when none or several do."""
    rows = list(rows)
    guid = as_guid(raw)
    if guid is not None:
        return guid
    wanted = raw.strip().lower()
    by_name = [config for config, _ in rows if config.display_name.lower() == wanted]
    by_domain = [config for config, _ in rows if wanted in _domains(config)]
    found = list({config.tenant_id: config for config in by_name + by_domain}.values())
    if len(found) == 1:
        return found[0].tenant_id
    if len(found) > 1:
        raise UsageError(f"{flag} {raw!r} names {len(found)} tenants: {_list(found)}; give the tenant id instead")
    near = [config for config, _ in rows if wanted in config.display_name.lower()] or [config for config, _ in rows]
    hint = (f"registered tenants{' like it' if len(near) < len(rows) else ''}: {_list(near)}" if near
            else "no tenant is registered yet (authwatch tenants add)")
    raise UsageError(f"{flag} {raw!r} is not a registered tenant id (GUID), display name or verified domain; {hint}")


def _list(configs: list[Any]) -> str:
    shown = ", ".join(f"{config.display_name} ({config.tenant_id})" for config in configs[:MAX_CANDIDATES])
    return shown + (f" and {len(configs) - MAX_CANDIDATES} more" if len(configs) > MAX_CANDIDATES else "")


async def resolve_async(registry: Any, raw: str, flag: str = "--tenant") -> str:
    if as_guid(raw) is not None:
        return as_guid(raw)  # type: ignore[return-value]
    return match(raw, await registry.list_rows(), flag)


def resolve(raw: str, env: Mapping[str, str] | None = None, flag: str = "--tenant") -> str:
    """A GUID as is (normalised); a name or domain looked up in the registry the storage settings point at."""
    guid = as_guid(raw)
    if guid is not None:
        return guid
    import os

    from shared.settings import Settings, SettingsError
    from shared.tenants.registry import TenantRegistry

    try:
        storage = Settings.from_env(env if env is not None else os.environ).storage
    except SettingsError as error:
        raise UsageError(f"{flag} {raw!r} is a name, which needs the registry: {error} (or give the tenant id, a "
                         "GUID)") from None

    async def go() -> str:
        registry = TenantRegistry.from_connection_string(storage)
        try:
            await registry.create()
            return await resolve_async(registry, raw, flag)
        finally:
            await registry.close()

    return asyncio.run(go())
