"""The demo's data: the demo fleet registered and evaluated in two cycles on a simulated clock, for `authwatch serve
--demo`, the demo's report and the dashboard tests.

The fleet is simulator/demo_fleet.py, evaluated through the queue worker's service function
(shared.cycle.fleet.evaluate_registered):

1. at DEMO_NOW, with Fabrikam as it was before its story: the legacy-auth block enforced;
2. one hour later, after admin@fabrikam.example switched that block to report-only (with the Conditional Access
   audit entry that names them) and the scanner sent mail with a password twice; Tailspin Toys' CRM kept sending
   with SMTP AUTH inside its 24-hour enforcement window.

So the dashboard shows a drift as before → after with who and when, alerts, and an open window's countdown. The
demo clock keeps running from the second cycle (DEMO_NOW + 1 h + the time since start).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Iterator, Mapping

from shared.cli.errors import UsageError
from shared.model import format_time

log = logging.getLogger("authwatch.demo")

# The demo's clock: the scripted stories are written relative to this moment.
DEMO_NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
DEMO_SECRET_SETTING = "AUTHWATCH_DEMO_SECRET"

# The second demo cycle (see the module docstring).
FABRIKAM = "8c1d0f4e-1a2b-4c3d-8e9f-000000000002"
TAILSPIN = "8c1d0f4e-1a2b-4c3d-8e9f-000000000004"
DRIFT_BY = "admin@fabrikam.example"
SECOND_CYCLE_AFTER = timedelta(hours=1)


def _as_before_the_story(tenant: dict[str, Any]) -> None:
    """Fabrikam before its story: the block enforced (as created), no legacy sign-in seen yet."""
    from simulator.demo_fleet import BLOCK_POLICY

    policy = tenant["graph"]["conditionalAccessPolicies"][0]
    policy.update(state="enabled", modifiedDateTime=BLOCK_POLICY["modifiedDateTime"])
    tenant["graph"]["signIns"] = []


def _switch_to_report_only(at: datetime) -> Callable[[dict[str, Any]], None]:
    from simulator.demo_fleet import _signin

    changed = at - timedelta(minutes=40)

    def mutate(tenant: dict[str, Any]) -> None:
        policy = tenant["graph"]["conditionalAccessPolicies"][0]
        policy.update(state="enabledForReportingButNotEnforced", modifiedDateTime=format_time(changed))
        tenant["graph"].setdefault("directoryAudits", []).append({
            "id": f"audit-{policy['id']}-{format_time(changed)}", "category": "Policy", "result": "success",
            "activityDisplayName": "Update conditional access policy", "activityDateTime": format_time(changed),
            "loggedByService": "Conditional Access", "operationType": "Update",
            "initiatedBy": {"user": {"id": "adad0000-0000-4000-8000-000000000001", "displayName": "Fabrikam Admin",
                                     "userPrincipalName": DRIFT_BY}, "app": None},
            "targetResources": [{"id": policy["id"], "displayName": policy["displayName"],
                                 "type": "Policy"}]})
        tenant["graph"]["signIns"] = [
            _signin(format_time(changed + timedelta(minutes=10)), "scanner@fabrikam.example", "Authenticated SMTP"),
            _signin(format_time(changed + timedelta(minutes=25)), "scanner@fabrikam.example", "Authenticated SMTP")]
    return mutate


def _crm_keeps_sending(at: datetime) -> Callable[[dict[str, Any]], None]:
    from simulator.demo_fleet import _signin

    def mutate(tenant: dict[str, Any]) -> None:
        tenant["graph"]["signIns"] = tenant["graph"]["signIns"] + [
            _signin(format_time(at - timedelta(minutes=45)), "sales@tailspin.example", "Authenticated SMTP"),
            _signin(format_time(at - timedelta(minutes=20)), "sales@tailspin.example", "Authenticated SMTP"),
            _signin(format_time(at - timedelta(minutes=5)), "warehouse@tailspin.example", "Exchange ActiveSync")]
    return mutate



def demo_scenario() -> dict[str, Any]:
    """The demo fleet as the first cycle sees it (Fabrikam before its story)."""
    from simulator.demo_fleet import demo_fleet

    scenario = demo_fleet()
    for tenant in scenario["tenants"]:
        if tenant["tenantId"] == FABRIKAM:
            _as_before_the_story(tenant)
    return scenario


def demo_env(connection_string: str, sim: Any, scenario: dict[str, Any],
             base: Mapping[str, str] | None = None) -> dict[str, str]:
    """App settings that point authwatch at the given storage and at the simulator."""
    env = {key: value for key, value in (os.environ if base is None else base).items()
           if key != "AzureWebJobsStorage"}
    env.update({"AUTHWATCH_STORAGE_CONNECTION_STRING": connection_string, "AUTHWATCH_AUTHORITY_HOST": sim.url,
                "AUTHWATCH_GRAPH_URL": sim.graph_url, "AUTHWATCH_EXCHANGE_URL": sim.url,
                "AUTHWATCH_CA_BUNDLE": sim.ca_path, DEMO_SECRET_SETTING: scenario["app"]["clientSecret"]})
    return env


async def register_fleet(fleet: Any, scenario: dict[str, Any], *, now: datetime) -> None:
    """Put the scenario's tenants in the registry (what onboarding does), so the API and reports list them."""
    from shared.tenants.config import TenantConfig

    for tenant in scenario["tenants"]:
        config = TenantConfig.from_json({
            "tenantId": tenant["tenantId"], "displayName": tenant["displayName"],
            "credential": {"mode": "secret", "clientId": scenario["app"]["clientId"],
                           "secretSetting": DEMO_SECRET_SETTING},
            "approvedExclusions": (tenant.get("settings") or {}).get("approvedExclusions") or {},
            "tags": ["demo"]})
        await fleet.registry.upsert(config, now=now)


async def evaluate_fleet(fleet: Any, tenant_ids: list[str], *, now: datetime) -> None:
    """One cycle over the given tenants, through the queue worker's service function."""
    from shared.cycle.fleet import EvaluationFailed, evaluate_registered

    async def one(tenant_id: str) -> None:
        try:
            await evaluate_registered(fleet, tenant_id, now=now)
        except EvaluationFailed as error:
            log.warning("demo evaluation failed", extra={"tenant_id": tenant_id, "error": str(error)})

    await asyncio.gather(*(one(tenant_id) for tenant_id in tenant_ids))


@dataclass
class DemoData:
    """A running demo: Azurite (unless storage was given), the simulator, the fleet evaluated twice."""

    connection_string: str
    env: dict[str, str]
    simulator: Any
    scenario: dict[str, Any]
    evaluated_at: datetime  # the second cycle's simulated time
    started: float = field(default_factory=time.monotonic)

    def clock(self) -> datetime:
        """The demo's simulated clock: it runs on from the last cycle in real time."""
        return self.evaluated_at + timedelta(seconds=time.monotonic() - self.started)


def seed_demo(connection_string: str, sim: Any, *, base_env: Mapping[str, str] | None = None,
              say: Callable[[str], None] = lambda message: None) -> DemoData:
    """Register the demo fleet in `connection_string` and run its two cycles against the running simulator `sim`
    (started with demo_scenario()). Safe to call on an account that already holds the demo: it re-registers and
    evaluates again (later cycles are compared, never duplicated)."""
    from shared.bootstrap import build_fleet

    scenario = sim.scenario if hasattr(sim, "scenario") else demo_scenario()
    env = demo_env(connection_string, sim, scenario, base_env)
    first, second = DEMO_NOW, DEMO_NOW + SECOND_CYCLE_AFTER
    ids = [tenant["tenantId"] for tenant in scenario["tenants"]]

    async def go() -> None:
        fleet = build_fleet(env)
        try:
            await fleet.create()
            await register_fleet(fleet, scenario, now=first)
            say(f"Cycle 1 at {format_time(first)} (simulated): evaluating {len(ids)} tenants…")
            await evaluate_fleet(fleet, ids, now=first)
            sim.update_tenant(FABRIKAM, _switch_to_report_only(second))
            sim.update_tenant(TAILSPIN, _crm_keeps_sending(second))
            say(f"Cycle 2 at {format_time(second)}: {DRIFT_BY} switched Fabrikam's legacy-auth block to report-only; "
                "Tailspin Toys' CRM keeps sending with SMTP AUTH inside its enforcement window…")
            await evaluate_fleet(fleet, ids, now=second)
        finally:
            await fleet.close()

    _run(go())
    return DemoData(connection_string, env, sim, scenario, second)


def _run(coroutine: Awaitable[Any]) -> Any:
    """asyncio.run, from a worker thread when this thread already runs an event loop (Playwright's sync API, a
    notebook): the demo can be seeded from anywhere."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)  # type: ignore[arg-type]
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = asyncio.run(coroutine)  # type: ignore[arg-type]
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=work, name="authwatch-demo-seed")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def write_demo_report(connection_string: str, sim: Any, path: str, *, now: datetime, fmt: str = "html") -> str:
    """For `authwatch demo`: register the simulator's tenants (the demo evaluates them without the registry) and
    write the fleet report to `path` (folders created). Returns the absolute path."""
    from shared.bootstrap import build_fleet
    from shared.views.reports import write_report

    env = demo_env(connection_string, sim, sim.scenario)

    async def go() -> None:
        fleet = build_fleet(env)
        try:
            await fleet.create()
            await register_fleet(fleet, sim.scenario, now=now)
            await write_report(fleet, path, fmt=fmt, now=now)
        finally:
            await fleet.close()

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _run(go())
    return os.path.abspath(path)


@contextmanager
def running_demo(say: Callable[[str], None] = print, *, storage_from_env: bool = True) -> Iterator[DemoData]:
    """Azurite (or AUTHWATCH_STORAGE_CONNECTION_STRING unless storage_from_env is False) + the simulator + the seeded
    demo fleet; everything started here is stopped afterwards."""
    from simulator import Simulator
    from simulator.azurite import Azurite, AzuriteError

    with ExitStack() as stack:
        connection_string = os.environ.get("AUTHWATCH_STORAGE_CONNECTION_STRING") if storage_from_env else None
        if connection_string:
            say("• Using the storage account from AUTHWATCH_STORAGE_CONNECTION_STRING")
        else:
            say("• Starting Azurite (local Table + Queue storage)…")
            try:
                connection_string = stack.enter_context(Azurite()).connection_string
            except AzuriteError as error:
                raise UsageError(f"{error} (Azurite comes from npm: run `make install`, or set "
                                 "AUTHWATCH_STORAGE_CONNECTION_STRING to a storage account)") from None
        sim = stack.enter_context(Simulator(demo_scenario()))
        say(f"• Simulated Microsoft cloud at {sim.url}")
        yield seed_demo(connection_string, sim, say=lambda message: say(f"• {message}"))
