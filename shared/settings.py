"""App settings, read once from the environment (Functions app settings, or the shell for the CLI)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from shared.collect import MicrosoftEndpoints
from shared.storage.account import StorageAccount


class SettingsError(ValueError):
    """A required setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    storage_connection_string: str  # "" on Azure, where storage is reached with the managed identity
    endpoints: MicrosoftEndpoints
    history_days: int = 90
    interval_minutes: int = 15  # how often a tenant is due, unless its registry entry overrides it
    signin_overlap_hours: int = 3  # how far each sign-in read goes back before the last complete one (late logs)
    tenant_deadline_seconds: int = 420  # one tenant's collection, inside host.json's 10-minute functionTimeout
    storage_table_url: str = ""
    storage_queue_url: str = ""

    @property
    def storage(self) -> StorageAccount:
        """The storage account: a connection string when there is one (Azurite, keys), else identity-based."""
        return StorageAccount(connection_string=self.storage_connection_string or None,
                              table_url=self.storage_table_url or None, queue_url=self.storage_queue_url or None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        # Functions always has AzureWebJobsStorage; a separate account for authwatch's data is optional.
        storage = env.get("AUTHWATCH_STORAGE_CONNECTION_STRING") or env.get("AzureWebJobsStorage") or ""
        table_url = env.get("AUTHWATCH_STORAGE_TABLE_URL", "")
        queue_url = env.get("AUTHWATCH_STORAGE_QUEUE_URL", "")
        if not storage and not (table_url and queue_url):
            raise SettingsError("set AUTHWATCH_STORAGE_CONNECTION_STRING (or AzureWebJobsStorage), or both "
                                "AUTHWATCH_STORAGE_TABLE_URL and AUTHWATCH_STORAGE_QUEUE_URL for identity-based "
                                "storage")
        raw_days = env.get("AUTHWATCH_HISTORY_DAYS", "90")
        if not raw_days.isdigit() or int(raw_days) < 1:
            raise SettingsError(f"AUTHWATCH_HISTORY_DAYS must be a whole number of days ≥ 1, got {raw_days!r}")
        raw_interval = env.get("AUTHWATCH_INTERVAL_MINUTES", "15")
        if not raw_interval.isdigit() or not 5 <= int(raw_interval) <= 1440:
            raise SettingsError(f"AUTHWATCH_INTERVAL_MINUTES must be between 5 and 1440, got {raw_interval!r}")
        raw_overlap = env.get("AUTHWATCH_SIGNIN_OVERLAP_HOURS", "3")
        if not raw_overlap.isdigit() or not 1 <= int(raw_overlap) <= 24:
            raise SettingsError(f"AUTHWATCH_SIGNIN_OVERLAP_HOURS must be a whole number of hours between 1 and 24, "
                                f"got {raw_overlap!r}")
        # At most 540 s: a minute of functionTimeout (10 minutes, host.json) is left to evaluate and persist, or the
        # host kills the invocation and the message ends poisoned
        # (https://learn.microsoft.com/en-us/azure/azure-functions/functions-host-json#functiontimeout).
        raw_deadline = env.get("AUTHWATCH_TENANT_DEADLINE_SECONDS", "420")
        if not raw_deadline.isdigit() or not 5 <= int(raw_deadline) <= 540:
            raise SettingsError(f"AUTHWATCH_TENANT_DEADLINE_SECONDS must be a whole number of seconds between 5 and "
                                f"540 (inside the 10-minute function timeout), got {raw_deadline!r}")
        return cls(storage_connection_string=storage, endpoints=endpoints_from_env(env), history_days=int(raw_days),
                   interval_minutes=int(raw_interval), signin_overlap_hours=int(raw_overlap),
                   tenant_deadline_seconds=int(raw_deadline), storage_table_url=table_url,
                   storage_queue_url=queue_url)


def endpoints_from_env(env: Mapping[str, str] | None = None) -> MicrosoftEndpoints:
    """Microsoft's public endpoints unless overridden (the simulator, a national cloud)."""
    env = os.environ if env is None else env
    defaults = MicrosoftEndpoints()
    endpoints = MicrosoftEndpoints(
        authority=env.get("AUTHWATCH_AUTHORITY_HOST", defaults.authority),
        graph=env.get("AUTHWATCH_GRAPH_URL", defaults.graph),
        exchange=env.get("AUTHWATCH_EXCHANGE_URL", defaults.exchange),
        partner_center=env.get("AUTHWATCH_PARTNER_CENTER_URL", defaults.partner_center),
        ca_bundle=env.get("AUTHWATCH_CA_BUNDLE") or None,
    )
    for name, url in (("AUTHWATCH_AUTHORITY_HOST", endpoints.authority), ("AUTHWATCH_GRAPH_URL", endpoints.graph),
                      ("AUTHWATCH_EXCHANGE_URL", endpoints.exchange),
                      ("AUTHWATCH_PARTNER_CENTER_URL", endpoints.partner_center)):
        if not url.startswith("https://"):
            raise SettingsError(f"{name} must be an https:// URL (azure-identity refuses anything else): {url!r}")
    return endpoints
