"""Helpers shared by the CLI commands that work on the deployed fleet (storage from the environment)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Awaitable, Callable

from shared.cli.errors import UsageError
from shared.settings import SettingsError


def with_fleet(body: Callable[[Any], Awaitable[Any]]) -> Any:
    """Build the fleet from the environment, run `body(fleet)`, close it; settings and lookup problems become
    one-line errors that say what to do next."""
    from shared.bootstrap import build_fleet
    from shared.views.api import BadRequest

    try:
        fleet = build_fleet()
    except SettingsError as error:
        raise UsageError(f"{error} (point authwatch at the storage account first)") from None

    async def go() -> Any:
        try:
            await fleet.create()
            return await body(fleet)
        finally:
            await fleet.close()

    try:
        return asyncio.run(go())
    except BadRequest as error:
        raise UsageError(str(error)) from None
    except LookupError as error:
        raise UsageError(f"{str(error).strip(chr(39))} (authwatch tenants add registers a tenant)") from None


def require_storage(what: str, demo: str) -> None:
    """A one-line usage error, before anything starts, when the storage settings are missing: `what` reads the
    monitor's storage account, and `--demo` does `demo` instead."""
    from shared.settings import Settings

    try:
        Settings.from_env()
    except SettingsError:
        raise UsageError(f"{what} reads the storage account the monitor writes to: set "
                         "AUTHWATCH_STORAGE_CONNECTION_STRING to its connection string (`azd env get-value "
                         f"AUTHWATCH_STORAGE_CONNECTION_STRING` after `azd up`), or add --demo to {demo} (starts "
                         "Azurite and the simulator; no Azure needed)") from None


@asynccontextmanager
async def stored_fleet(env: Mapping[str, str]) -> AsyncIterator[Any]:
    """The fleet over the storage account `env` names (reports, timeline, readiness), reached within 30 s or a
    one-line error that says what to check; closed afterwards."""
    from shared.bootstrap import build_fleet

    fleet = build_fleet(env)
    try:
        try:
            await asyncio.wait_for(fleet.create(), timeout=30)
        except Exception as error:  # noqa: BLE001 - any failure here means the same thing to the user
            first = (str(error).strip().splitlines() or [""])[0][:300]
            raise UsageError(f"cannot reach the storage account ({type(error).__name__}: {first}); check "
                             "AUTHWATCH_STORAGE_CONNECTION_STRING, or add --demo for the local demo fleet") from None
        yield fleet
    finally:
        await fleet.close()


def tenant_arg(raw: str) -> str:
    """--tenant (id, display name or verified domain) as a normalised GUID, or a one-line usage error."""
    from shared.cli.tenantref import resolve

    return resolve(raw)
