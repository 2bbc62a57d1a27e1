"""Collectors: the only code that talks to Microsoft. They turn live APIs into one TenantSnapshot.
May import: shared.controls (what each control reads), shared.model, shared.logs; never storage or state."""

from shared.collect.connection import TenantAccess
from shared.collect.endpoints import MicrosoftEndpoints
from shared.collect.snapshot import collect_tenant

__all__ = ["MicrosoftEndpoints", "TenantAccess", "collect_tenant"]
