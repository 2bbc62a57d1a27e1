"""Helpers shared by the CLI commands that work on the deployed fleet (storage from the environment)."""

from __future__ import annotations

import asyncio
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


def tenant_arg(raw: str) -> str:
    """--tenant (id, display name or verified domain) as a normalised GUID, or a one-line usage error."""
    from shared.cli.tenantref import resolve

    return resolve(raw)
