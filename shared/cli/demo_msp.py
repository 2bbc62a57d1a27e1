"""The demo's MSP story: a partner tenant discovers its 12 GDAP customers, onboards 10 in one go, and is told the
one fix for each of the other two; a former customer whose relationship ended is reported once.

It runs the same code as `authwatch tenants discover --add-all` (shared/cli/tenants_partner.run_partner) against the
simulator's partner side (simulator/msp_fleet.py), with the demo's storage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timezone
from typing import Any

from shared.collect.credentials import CredentialSpec
from shared.collect.endpoints import MicrosoftEndpoints
from shared.storage.account import account
from shared.tenants.config import TenantConfig

SECRET_SETTING = "AUTHWATCH_DEMO_MSP_SECRET"


async def _former_customer(storage: Any, tenant_id: str, name: str, client_id: str) -> None:
    """Trey Research was onboarded long ago; its GDAP relationship has since been terminated."""
    from shared.tenants.config import TenantExists
    from shared.tenants.registry import TenantRegistry

    registry = TenantRegistry(storage.table_service())
    try:
        await registry.create()
        spec = CredentialSpec.from_json({"mode": "secret", "clientId": client_id, "secretSetting": SECRET_SETTING})
        await registry.add(TenantConfig(tenant_id=tenant_id, display_name=name, credential=spec, tags=("gdap",)))
    except TenantExists:
        pass
    finally:
        await registry.close()


def tell_msp_story(connection_string: str, say: Any = print) -> int:
    """Run the MSP story; returns the onboarding's exit status (1: two customers need a fix, as scripted)."""
    from shared.cli.tenants_partner import PartnerRun, _config_for, run_partner
    from simulator import Simulator
    from simulator.msp_fleet import FORMER, PARTNER_NAME, PARTNER_TENANT_ID, TERMINATED_ID, msp_scenario

    scenario = msp_scenario()
    client_id = scenario["app"]["clientId"]
    storage = account(connection_string)
    with Simulator(scenario) as sim:
        endpoints = MicrosoftEndpoints(authority=sim.url, graph=sim.graph_url, exchange=sim.url,
                                       partner_center=sim.url, ca_bundle=sim.ca_path)
        env = {SECRET_SETTING: scenario["app"]["clientSecret"]}
        asyncio.run(_former_customer(storage, TERMINATED_ID, FORMER[0], client_id))
        say(f"\nAn MSP's morning: {PARTNER_NAME} onboards its customers through GDAP "
            f"(`authwatch tenants discover --add-all`), signing in once:")
        options = argparse.Namespace(credential_mode="secret", client_id=client_id, managed_identity_client_id=None,
                                     secret_setting=SECRET_SETTING, certificate_setting=None)
        status = asyncio.run(run_partner(PartnerRun(PARTNER_TENANT_ID, client_id, [], True, 4, True), env,
                                         endpoints, storage, _config_for(options, env), prompt=_demo_prompt))
        say("\nThe next discovery does not report the ended relationship again (it was reported once):")
        again = _ended_again(PARTNER_TENANT_ID, client_id, endpoints, storage)
        say(f"  relationships ended and reported this time: {again}")
    return status


def _demo_prompt(uri: str, code: str, _expires: Any) -> None:
    print(f"  (sign-in: open {uri} and enter {code}; the simulator approves it at once)", file=sys.stderr, flush=True)


def _ended_again(partner: str, client_id: str, endpoints: MicrosoftEndpoints, storage: Any) -> int:
    from shared.tenants.partner_service import discover, partner_session

    async def go() -> int:
        async with partner_session(client_id, partner, endpoints, storage, _demo_prompt) as session:
            found = await discover(session.client, session.registry, session.records, now=datetime.now(timezone.utc))
            return len(found.ended_now)

    return asyncio.run(go())
