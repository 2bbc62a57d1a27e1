"""`authwatch tenants discover|onboard|onboarding`: an MSP's customers through GDAP, onboarded in bulk.

discover   list the partner's customers (GDAP relationships: roles, end dates), which are watched, which need a fix;
           with --add-all or --select, onboard those not yet watched
onboard    onboard the given customers (again): what `discover --select` does, for the fixes to point at
onboarding every customer's onboarding state and its one fix (no sign-in: read from storage)

The operator signs in once (device code) to the partner tenant; only these onboarding calls use delegated rights.
Where things come from: the app's client id from --client-id or AUTHWATCH_APP_CLIENT_ID; the partner tenant from
--partner-tenant or AUTHWATCH_PARTNER_TENANT_ID; Microsoft's endpoints from AUTHWATCH_AUTHORITY_HOST /
AUTHWATCH_GRAPH_URL / AUTHWATCH_PARTNER_CENTER_URL / AUTHWATCH_CA_BUNDLE; storage from the app's settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from shared.cli.errors import UsageError
from shared.cli.output import add_output
from shared.cli.tenant_config import tenant_config  # the same defaults and checks as `tenants add`
from shared.collect.credentials import MODES
from shared.collect.operator import OperatorSignInError
from shared.collect.partner import PARTNER_CENTER_SCOPE, PartnerCallError
from shared.settings import SettingsError, endpoints_from_env
from shared.storage.account import account
from shared.tenants import onboarding
from shared.tenants.config import TenantConfig, tenant_key
from shared.tenants.gdap import Customer, RelationshipError
from shared.tenants.onboarding_records import OnboardingRecord
from shared.tenants.partner_service import Discovery, discover, onboard, partner_session
from shared.tenants.registry_admin import GDAP_TAG

APP_NAME = "authwatch"


def add_actions(actions: Any) -> None:
    find = actions.add_parser("discover", help="list your GDAP customers; --add-all/--select onboards them",
                              description="List the customers of your partner tenant (GDAP relationships, their "
                              "roles and end dates), which authwatch watches and which need a fix; with --add-all "
                              "or --select, onboard them (admin consent, app roles, Global Reader, access check). "
                              "Exit status: 0 listed, or every customer onboarded is ready; 1 an onboarded customer "
                              "needs a fix; 2 bad input, or the sign-in or the listing failed.")
    which = find.add_mutually_exclusive_group()
    which.add_argument("--add-all", action="store_true", help="onboard every customer not yet watched")
    which.add_argument("--select", nargs="+", metavar="ID", help="onboard these customers (tenant ids)")
    _common(find)
    again = actions.add_parser("onboard", help="onboard the given GDAP customers (again, after a fix)",
                               description="Onboard the given customers through GDAP; steps already done are not "
                               "repeated. Exit status as for discover.")
    again.add_argument("--tenant", nargs="+", required=True, metavar="ID", help="the customers' tenant ids")
    _common(again)
    state = actions.add_parser("onboarding", help="every GDAP customer's onboarding state and its fix",
                               description="Every customer's onboarding state and the one fix for it, from storage.")
    add_output(state, ("table", "json"), "table")
    state.set_defaults(run=run_onboarding)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--partner-tenant", metavar="ID", help="your partner tenant; default "
                        "$AUTHWATCH_PARTNER_TENANT_ID")
    parser.add_argument("--client-id", metavar="APP_ID", help="the multi-tenant app; default $AUTHWATCH_APP_CLIENT_ID")
    parser.add_argument("--credential-mode", choices=MODES, default="federated",
                        help="how authwatch signs in to the onboarded customers (as for `tenants add`)")
    parser.add_argument("--managed-identity-client-id", metavar="ID")
    parser.add_argument("--secret-setting", metavar="NAME")
    parser.add_argument("--certificate-setting", metavar="NAME")
    parser.add_argument("--concurrency", type=int, default=4, metavar="N",
                        help="customers onboarded at once (1-16, default 4)")
    add_output(parser, ("text", "json"), "text")
    parser.set_defaults(run=run_discover)


def _prompt(uri: str, code: str, expires: datetime) -> None:
    print(f"To sign in to your partner tenant, open {uri} and enter the code {code} "
          f"(valid until {expires.astimezone(timezone.utc):%H:%M} UTC).", file=sys.stderr, flush=True)


def _config_for(args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    def build(customer: Customer) -> TenantConfig:
        return tenant_config(argparse.Namespace(tenant=customer.tenant_id, name=customer.name[:256] or customer.tenant_id,
                                          schedule_minutes=None, tag=[GDAP_TAG], **{
                                              key: getattr(args, key) for key in (
                                                  "credential_mode", "client_id", "managed_identity_client_id",
                                                  "secret_setting", "certificate_setting")}), env)
    return build


def run_discover(args: argparse.Namespace) -> int:
    env = os.environ
    partner = args.partner_tenant or env.get("AUTHWATCH_PARTNER_TENANT_ID")
    client_id = args.client_id or env.get("AUTHWATCH_APP_CLIENT_ID")
    if not partner or not client_id:
        raise UsageError("give --partner-tenant and --client-id (or AUTHWATCH_PARTNER_TENANT_ID and "
                         "AUTHWATCH_APP_CLIENT_ID)")
    tenant_key(partner)
    if not 1 <= args.concurrency <= 16:
        raise UsageError("--concurrency must be from 1 to 16")
    selected = [tenant_key(item) for item in (getattr(args, "select", None) or getattr(args, "tenant", None) or [])]
    try:
        endpoints = endpoints_from_env(env)
        from shared.settings import Settings

        storage = account(Settings.from_env(env).storage)
    except SettingsError as error:
        raise UsageError(str(error)) from None
    config_for = _config_for(args, env)
    config_for(Customer(partner, "options check", ()))  # bad credential options: said now, before any sign-in
    return asyncio.run(run_partner(
        PartnerRun(partner, client_id, selected, getattr(args, "add_all", False) or bool(selected),
                   args.concurrency, args.format == "text"), env, endpoints, storage, config_for))


@dataclass(frozen=True)
class PartnerRun:
    partner: str
    client_id: str
    selected: list[str]
    onboard: bool  # onboard the selected customers (all not yet watched when none is named)
    concurrency: int = 4
    text: bool = True


async def run_partner(run: PartnerRun, env: Mapping[str, str], endpoints: Any, storage: Any, config_for: Any,
                      prompt: Any = None) -> int:
    """Sign the operator in, discover, onboard what was asked; print as text or JSON. The CLI's and the demo's."""
    now = datetime.now(timezone.utc)
    text = run.text
    outcomes: list[OnboardingRecord] = []
    try:
        async with partner_session(run.client_id, run.partner, endpoints, storage, prompt or _prompt) as session:
            found = await discover(session.client, session.registry, session.records, now=now)
            if text:
                _print_discovery(found)
            wanted = _selection(found, run.selected, run.onboard)
            if wanted:
                # Partner Center's consent (AdminAgents, MFA) fails here, once, not once per customer.
                await session.operator.token(PARTNER_CENTER_SCOPE)
                if text:
                    print(f"\nOnboarding {len(wanted)} customer(s), {run.concurrency} at a time …", flush=True)
                outcomes = await onboard(
                    wanted, session.client, session.registry, session.records, app_id=run.client_id,
                    app_name=APP_NAME, config_for=config_for,
                    check=lambda config: onboarding.check_access(config.tenant_id, config.credential, endpoints, env,
                                                                 now=now, assertion_provider=_assertion(config, env)),
                    now=now, concurrency=run.concurrency, progress=_progress if text else None)
                if text:
                    _print_outcomes(outcomes)
            if not text:
                print(json.dumps({**found.to_json(), "onboarded": [record.to_json() for record in outcomes]},
                                 indent=2))
    except OperatorSignInError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (PartnerCallError, RelationshipError) as error:
        print(f"error: reading your GDAP customers failed: {error}", file=sys.stderr)
        return 2
    return 1 if any(record.state != "ready" or record.fix for record in outcomes) else 0


def _assertion(config: TenantConfig, env: Mapping[str, str]) -> Any:
    """As `tenants add` does: in federated mode off Azure, the workload-identity assertion in
    AZURE_FEDERATED_TOKEN_FILE stands in for the managed identity's (which only exists where the identity is)."""
    token_file = env.get("AZURE_FEDERATED_TOKEN_FILE")
    return onboarding.assertion_from_file(token_file) if config.credential.mode == "federated" and token_file else None


def _selection(found: Discovery, selected: list[str], onboarding_wanted: bool) -> list[Customer]:
    if not onboarding_wanted:
        return []
    by_id = {customer.tenant_id: customer for customer in found.customers}
    unknown = [tenant_id for tenant_id in selected if tenant_id not in by_id]
    if unknown:
        raise UsageError(f"not a customer of this partner tenant (no GDAP relationship): {', '.join(unknown)}")
    if selected:
        return [by_id[tenant_id] for tenant_id in dict.fromkeys(selected)]
    removed = {tenant_id for tenant_id, record in found.records.items() if record.state == "removed"}
    # --add-all: every active customer not watched, except those you removed (name them to watch them again)
    return [customer for customer in found.customers
            if not customer.watched and customer.active and customer.tenant_id not in removed]


def _print_discovery(found: Discovery) -> None:
    active = [customer for customer in found.customers if customer.active]
    watched = [customer for customer in found.customers if customer.watched]
    print(f"{len(found.customers)} customer(s) through GDAP: {len(active)} with an active relationship, "
          f"{len(watched)} watched by authwatch")
    rows = [("CUSTOMER", "TENANT ID", "WATCHED", "RELATIONSHIP ENDS", "NOTE")]
    for customer in found.customers:
        rows.append((customer.name[:32], customer.tenant_id, "yes" if customer.watched else "no",
                     _ends(customer), _note(customer, found.records.get(customer.tenant_id))))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    for customer in found.ended_now:
        print(f"\nOffboarding: {found.records[customer.tenant_id].fix}")


def _ends(customer: Customer) -> str:
    if customer.end is None:
        return "ended" if customer.ended else "-"
    return f"{customer.end:%Y-%m-%d}" + (" (auto-extends)" if customer.auto_extends else "")


def _note(customer: Customer, record: OnboardingRecord | None) -> str:
    if customer.ended:
        return "relationship ended" + (" (reported)" if record and record.ended_reported_at else "")
    if not customer.active:
        return "no active relationship" if customer.relationships else "relationships not readable"
    notes = []
    if customer.missing_roles:
        notes.append(f"relationship lacks {', '.join(customer.missing_roles)}")
    if customer.ends_soon:
        notes.append("relationship ends within 30 days and does not auto-extend")
    if customer.unknown_statuses:
        notes.append(f"unknown relationship status {', '.join(customer.unknown_statuses)}")
    if record is not None and record.state == "removed" and not customer.watched:
        notes.append("removed: --add-all leaves it alone")
    elif record is not None and record.state != "ready" and not customer.watched:
        notes.append(f"onboarding: {record.state.replace('_', ' ')}")
    return "; ".join(notes)


def _progress(done: int, total: int, record: OnboardingRecord) -> None:
    print(f"  [{done}/{total}] {record.name}: {record.state.replace('_', ' ')}", flush=True)


def _print_outcomes(outcomes: list[OnboardingRecord]) -> None:
    counts: dict[str, int] = {}
    for record in outcomes:
        counts[record.state] = counts.get(record.state, 0) + 1
    print("\n" + ", ".join(f"{count} {state.replace('_', ' ')}" for state, count in sorted(counts.items())))
    for record in outcomes:
        if record.state != "ready" or record.fix:  # a ready one with a fix: grants onboarding could not withdraw
            print(f"\n{record.name} ({record.tenant_id}): {record.state.replace('_', ' ')}\n  why: {record.detail}\n"
                  f"  fix: {record.fix}")


def run_onboarding(args: argparse.Namespace) -> int:
    """What the dashboard's Onboarding page shows (shared/views/onboarding_view.py), those needing a fix first."""
    from shared.cli.fleetcmd import with_fleet
    from shared.views.onboarding_view import EMPTY, onboarding_overview

    customers = with_fleet(onboarding_overview)["customers"]
    if args.format == "json":
        print(json.dumps(customers, indent=2))
        return 0
    if not customers:
        print(EMPTY)
    for row in customers:
        print(f"{row['name']} ({row['tenantId']}): {row['label']}")
        if row["fix"]:
            print(f"  fix: {row['fix']}")
    return 0
