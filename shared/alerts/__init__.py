"""Alert delivery: channels as plug-ins, routing, at-least-once delivery grouped per tenant and cycle, failed-delivery
records and reminder digests. May import: shared.tenants, shared.settings and the layers below; not shared.cycle.

Entry points (the Functions layer calls these): `deliver_message`, `record_poison_message`, `run_digest`;
for the API and the dashboard: `failed_deliveries`; for receivers: `verify_signature` (see README.md here).
"""

from shared.alerts.channels import Channel, build_channel, channel_types, register_channel
from shared.alerts.config import AlertSettings, validate_tenant_routing
from shared.alerts.content import AlertGroup, Digest
from shared.alerts.entrypoints import deliver_message, failed_deliveries, record_poison_message, run_digest
from shared.alerts.errors import AlertConfigError, AlertDeliveryFailed, InvalidAlert
from shared.alerts.routing import Routing, TenantInfo, parse_routing
from shared.alerts.service import AlertService, DeliveryReport, DigestReport
from shared.alerts.signing import SIGNATURE_HEADER, sign, verify_signature

__all__ = [
    "SIGNATURE_HEADER", "AlertConfigError", "AlertDeliveryFailed", "AlertGroup", "AlertService", "AlertSettings",
    "Channel", "DeliveryReport", "Digest", "DigestReport", "InvalidAlert", "Routing", "TenantInfo", "build_channel",
    "channel_types", "deliver_message", "failed_deliveries", "parse_routing", "record_poison_message",
    "register_channel", "run_digest", "sign", "validate_tenant_routing", "verify_signature",
]
