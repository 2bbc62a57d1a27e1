"""A tenant's configuration from `authwatch tenants add`-style options: the one place the CLI's credential flags,
their defaults from the environment and their checks live (`tenants add`, `tenants discover --add-all`)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from shared.cli.errors import UsageError
from shared.collect.credentials import CredentialError, CredentialSpec
from shared.tenants.config import RegistryError, TenantConfig


def tenant_config(args: argparse.Namespace, env: Mapping[str, str]) -> TenantConfig:
    client_id = args.client_id or env.get("AUTHWATCH_APP_CLIENT_ID")
    if not client_id:
        raise UsageError("give --client-id or set AUTHWATCH_APP_CLIENT_ID to the app registration's client id "
                         "(`azd env get-value AUTHWATCH_APP_CLIENT_ID` after `azd up`)")
    mode = args.credential_mode
    identity = (args.managed_identity_client_id or env.get("AZURE_CLIENT_ID")) if mode == "federated" else None
    if mode == "federated" and not identity:
        raise UsageError("federated mode needs the managed identity's client id: --managed-identity-client-id or "
                         "AZURE_CLIENT_ID (`azd env get-value AZURE_MANAGED_IDENTITY_CLIENT_ID`)")
    for flag, value, wanted in (("--secret-setting", args.secret_setting, "secret"),
                                ("--certificate-setting", args.certificate_setting, "certificate")):
        if value and mode != wanted:
            raise UsageError(f"{flag} goes with --credential-mode {wanted}")
    try:
        spec = CredentialSpec.from_json({"mode": mode, "clientId": client_id, "managedIdentityClientId": identity,
                                         "secretSetting": args.secret_setting,
                                         "certificateSetting": args.certificate_setting})
        return TenantConfig(tenant_id=args.tenant, display_name=args.name, credential=spec,
                            schedule_minutes=args.schedule_minutes, tags=tuple(args.tag))
    except (CredentialError, RegistryError) as error:
        raise UsageError(str(error)) from None
