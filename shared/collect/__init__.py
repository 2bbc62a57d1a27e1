"""Collectors: the only code that talks to Microsoft. They turn live APIs into one TenantSnapshot."""

from shared.collect.connection import MicrosoftEndpoints, TenantAccess
from shared.collect.snapshot import collect_tenant

__all__ = ["MicrosoftEndpoints", "TenantAccess", "collect_tenant"]
