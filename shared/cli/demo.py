"""`authwatch demo`: the monitor over a simulated fleet for a simulated day and a half, no Azure account needed.

Starts Azurite (real Table + Queue storage) and the simulator (token endpoint, Graph, Exchange admin API over
HTTPS), evaluates every tenant through the same service function the queue worker uses, reads the stored results
back and prints them; then lets simulated hours pass while the scripted stories unfold (a block switched to
report-only and back, SMTP AUTH switched on, an enforcement gap, consent restored) and prints each alert as it
fires, with the enforcement countdowns.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from contextlib import ExitStack
from datetime import datetime
from typing import Any

from shared.cli.demo_data import DEMO_NOW
from shared.cli.errors import UsageError
from shared.cli.render import table
from shared.collect import MicrosoftEndpoints, TenantAccess
from shared.controls import controls
from shared.cycle.service import Monitor, TenantOutcome, run_cycle
from shared.model import ControlResult, Status, format_time
from shared.storage.entities import StoredResult
from shared.storage.queues import ALERTS_QUEUE, JsonQueue
from shared.storage.tenant_store import TenantStore


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("demo", help="run the monitor over a simulated fleet",
                                 description="Start Azurite and the simulator, evaluate a scripted fleet, show it.")
    parser.set_defaults(run=run)


def _step(message: str) -> float:
    print(f"• {message}", flush=True)
    return time.monotonic()


def fleet_access(scenario: dict[str, Any]) -> list[TenantAccess]:
    app = scenario["app"]
    return [
        TenantAccess(tenant_id=tenant["tenantId"], client_id=app["clientId"], client_secret=app["clientSecret"],
                     display_name=tenant.get("displayName", ""), settings=tenant.get("settings", {}))
        for tenant in scenario["tenants"]
    ]


async def _cycle(tenants: list[TenantAccess], endpoints: MicrosoftEndpoints, connection_string: str,
                 now: datetime = DEMO_NOW, alerts: list[dict[str, Any]] | None = None
                 ) -> tuple[list[TenantOutcome], dict[str, list[StoredResult]]]:
    monitor = Monitor(store=TenantStore.from_connection_string(connection_string),
                      alerts=JsonQueue.from_connection_string(connection_string, ALERTS_QUEUE), endpoints=endpoints)
    try:
        outcomes = await run_cycle(tenants, monitor, now=now)
        stored = {access.tenant_id: (await monitor.store.load(access.tenant_id)).results for access in tenants}
        queued = await monitor.alerts.receive_all(limit=10_000)  # the demo shows them itself, as delivered
        if alerts is not None:
            alerts.extend(queued)
    finally:
        await monitor.close()
    return outcomes, stored


async def _countdowns(tenants: list[TenantAccess], connection_string: str, now: datetime) -> list[str]:
    """One line per open enforcement window: how long until legacy sign-ins count as a gap."""
    from shared.controls.enforcement_window import EnforcementWindow, describe_duration
    from shared.model import parse_time_or_none

    lines = []
    async with TenantStore.from_connection_string(connection_string) as store:
        for access in tenants:
            state = (await store.load(access.tenant_id)).state or {}
            tracked = state.get("enforcement") or {}
            started = parse_time_or_none(tracked.get("startedAt")) if tracked.get("startedAt") else None
            window = EnforcementWindow(started, float(tracked.get("hours", 24)))
            if started and not window.has_closed(now):
                lines.append(f"  {access.display_name:<20} window closes {format_time(window.closes_at)} "
                             f"({describe_duration(window.time_left(now))} left): the Conditional Access block")
            # Exchange's own windows (state/windows.py): one line each while open.
            for exchange in state.get("windows") or ():
                closes = parse_time_or_none(exchange.get("closesAt"))
                if closes and closes > now and not (exchange.get("confirmed") or exchange.get("gapReported")
                                                    or exchange.get("cancelled")):
                    lines.append(f"  {access.display_name:<20} window closes {format_time(closes)} "
                                 f"({describe_duration(closes - now)} left): {exchange.get('label')}")
    return lines


def _print_alerts(at: datetime, outcomes: list[TenantOutcome], queued: list[dict[str, Any]]) -> int:
    """The alerts of one cycle as a person receives them: one grouped message per tenant, with what changed, who
    changed it, what it exposes, the time left in an open window and the fix (the same text channels send)."""
    from shared.alerts.content import AlertGroup, group_by_cycle, render_text

    names = {outcome.tenant_id: outcome.display_name for outcome in outcomes}
    groups = group_by_cycle(queued)
    for group in groups:
        tenant = str(group[0]["tenantId"])
        print(render_text(AlertGroup(tenant, names.get(tenant, tenant), tuple(group), None, at)), end="\n\n")
    if not groups:
        print("  (no alert: nothing changed)")
    return len(queued)


def _tell_story(sim: Any, tenants: list[TenantAccess], endpoints: MicrosoftEndpoints,
                connection_string: str) -> int:
    """Let simulated hours pass: each step changes one tenant, runs a whole cycle, prints the alerts it raised."""
    from datetime import timedelta

    from simulator.demo_fleet import STORY

    names = {access.tenant_id: access.display_name for access in tenants}
    raised = 0
    print("\nSimulated hours pass (every cycle evaluates the whole fleet; only changes raise alerts):")
    for hours, tenant_id, story, change in STORY:
        at = DEMO_NOW + timedelta(hours=hours)
        for access in tenants:  # the simulated audit log's clock follows the story's (it decides what is searchable)
            sim.update_tenant(access.tenant_id, lambda t: t.update(auditQuery={**(t.get("auditQuery") or {}),
                                                                              "now": format_time(at)}))
        if change is not None:
            sim.update_tenant(tenant_id, change)
        print(f"\n[{format_time(at)}] {names[tenant_id]}: {story}")
        queued: list[dict[str, Any]] = []
        outcomes, _ = asyncio.run(_cycle(tenants, endpoints, connection_string, now=at, alerts=queued))
        raised += _print_alerts(at, outcomes, queued)
        countdowns = asyncio.run(_countdowns(tenants, connection_string, at))
        if countdowns:
            print("  Enforcement windows still open:")
            print("\n".join(countdowns))
    asyncio.run(_print_attributions(tenants, connection_string, names))
    return raised


async def _print_attributions(tenants: list[TenantAccess], connection_string: str, names: dict[str, str]) -> None:
    """The alerts whose actor Microsoft's audit log named after they were sent (filled in place, no new alert)."""
    lines = []
    async with TenantStore.from_connection_string(connection_string) as store:
        for access in tenants:
            for event in await store.history(access.tenant_id, limit=200):
                details = event.get("details") or {}
                if details.get("attributedBy"):
                    lines.append(f"  {names[access.tenant_id]}: {event['type']} at {event['at']}: changed by "
                                 f"{details.get('changedBy')} at {details.get('changedAt')} with "
                                 f"{details.get('cmdlet')} {details.get('parameters')}")
    if lines:
        print("\nWho changed it, filled in later from Microsoft's audit log (same alert, no second one):")
        print("\n".join(lines))


def _print_results(outcomes: list[TenantOutcome], stored: dict[str, list[StoredResult]],
                   stories: dict[str, str]) -> None:
    """A tenants × controls matrix, then one line per thing that needs a person's attention."""
    catalogue = controls()
    control_ids = [control.id for control in catalogue]
    matrix = []
    attention = []
    for outcome in outcomes:
        by_control = {item.result.control: item.result for item in stored.get(outcome.tenant_id, [])}
        missing = "unknown" if outcome.unreachable else "-"  # never read: nothing is known about it
        matrix.append([outcome.display_name] + [str(by_control[c].status) if c in by_control else missing
                                                 for c in control_ids])
        attention.extend(_attention(outcome, [by_control[c] for c in control_ids if c in by_control]))
    print()
    table(["TENANT"] + [control.metadata.label or control.id for control in catalogue], matrix,
          status_columns=range(1, len(control_ids) + 1))
    print("\nWhat needs attention:\n")
    table(("TENANT", "CONTROL", "STATUS", "WHY"), attention, status_columns=(2,))
    print("\nThe stories behind the fleet:")
    for outcome in outcomes:
        print(f"  {outcome.display_name:<20} {stories.get(outcome.tenant_id, '')}")
    failing = sum(1 for items in stored.values() for item in items if item.result.status == Status.FAIL)
    print(f"\n{len(outcomes)} tenants evaluated at {format_time(DEMO_NOW)} (simulated clock); "
          f"{failing} failing controls; results stored in Table storage and read back for this table.")


def _attention(outcome: TenantOutcome, results: list[ControlResult]) -> list[tuple[str, str, str, str]]:
    """What a person must look at for one tenant: every non-passing verdict, but one line for a whole tenant that
    could not be reached and one line for controls that are unknown because the same sources are missing."""
    name = outcome.display_name
    if outcome.failure:
        return [(name, "-", "unknown", outcome.failure)]
    if outcome.unreachable and outcome.snapshot:
        error = next(iter(outcome.snapshot.errors.values()))
        return [(name, "(whole tenant)", "unreachable", f"{error.code}: {error.message}")]
    rows = [(name, r.control, str(r.status), r.summary) for r in results
            if r.status not in (Status.PASS, Status.UNKNOWN)]
    unknown = [r for r in results if r.status == Status.UNKNOWN]
    if len(unknown) > 1 and outcome.snapshot and outcome.snapshot.errors:
        causes = sorted({f"{e.status or ''} {e.message or e.code}".strip()
                         for e in outcome.snapshot.errors.values()})
        missing = ", ".join(sorted(outcome.snapshot.errors))
        rows.append((name, f"{len(unknown)} controls", "unknown",
                     f"{missing} not collected: {'; '.join(causes)}"))
    else:
        rows.extend((name, r.control, str(r.status), r.summary) for r in unknown)
    return rows


def _print_readiness(connection_string: str) -> None:
    """Who still sends with SMTP AUTH before Microsoft switches Basic off (what `authwatch readiness smtp-basic`
    prints in full): one line per sender."""
    from shared.cli.fleetcmd import stored_fleet
    from shared.views.readiness import smtp_basic

    async def load() -> dict[str, Any]:
        async with stored_fleet({**os.environ, "AUTHWATCH_STORAGE_CONNECTION_STRING": connection_string}) as fleet:
            return await smtp_basic(fleet, now=DEMO_NOW)

    try:
        answer = asyncio.run(load())
    except Exception as error:  # noqa: BLE001 - a readiness problem must not end the demo
        print(f"  (SMTP AUTH readiness could not be read: {type(error).__name__}: {error})")
        return
    senders = [(tenant["displayName"], sender) for tenant in answer["tenants"] for sender in tenant["senders"]]
    print(f"\nSMTP AUTH Basic readiness before the switch-off ({answer['switchOff']}, {answer['announcement']}): "
          f"{len(senders)} sender(s) still use SMTP AUTH (authwatch readiness smtp-basic for the fixes):")
    for name, sender in senders:
        print(f"  {name:<20} {sender['user']:<32} {sender['outcome']:<14} last seen {sender['lastSeen']}")


def _write_report(connection_string: str, sim: Any) -> str | None:
    """The self-contained HTML report of the first cycle (out/ is gitignored); the demo goes on without it."""
    from shared.cli.demo_data import write_demo_report

    try:
        return str(write_demo_report(connection_string, sim, os.path.join("out", "authwatch-report.html"),
                                     now=DEMO_NOW))
    except Exception as error:  # noqa: BLE001 - a report problem must not end the demo
        print(f"  (the HTML report could not be written: {type(error).__name__}: {error})")
        return None


def run(args: argparse.Namespace) -> int:
    from shared.cli.demo_msp import tell_msp_story
    from simulator import Simulator
    from simulator.azurite import Azurite, AzuriteError
    from simulator.demo_fleet import demo_fleet

    scenario = demo_fleet()
    stories = {tenant["tenantId"]: tenant.get("story", "") for tenant in scenario["tenants"]}
    with ExitStack() as stack:
        connection_string = os.environ.get("AUTHWATCH_STORAGE_CONNECTION_STRING")
        if connection_string:
            _step("Using the storage account from AUTHWATCH_STORAGE_CONNECTION_STRING")
        else:
            started = _step("Starting Azurite (local Table + Queue storage)…")
            try:
                connection_string = stack.enter_context(Azurite()).connection_string
            except AzuriteError as error:
                raise UsageError(str(error)) from None
            print(f"  ready in {time.monotonic() - started:.1f} s")
        sim = stack.enter_context(Simulator(scenario))
        _step(f"Simulated Microsoft cloud (token endpoint, Graph, Exchange admin API) at {sim.url}")
        endpoints = MicrosoftEndpoints(authority=sim.url, graph=sim.graph_url, exchange=sim.url, ca_bundle=sim.ca_path)
        tenants = fleet_access(scenario)
        started = _step(f"Evaluating {len(tenants)} tenants…")
        outcomes, stored = asyncio.run(_cycle(tenants, endpoints, connection_string))
        print(f"  done in {time.monotonic() - started:.1f} s")
        _print_results(outcomes, stored, stories)
        report = _write_report(connection_string, sim)
        opened = sum(len(outcome.events) for outcome in outcomes)
        print(f"{opened} alerts opened at first sight (the failing controls above); from now on only changes alert.")
        countdowns = asyncio.run(_countdowns(tenants, connection_string, DEMO_NOW))
        if countdowns:
            print("Enforcement windows open at first sight:\n" + "\n".join(countdowns))
        _print_readiness(connection_string)
        raised = _tell_story(sim, tenants, endpoints, connection_string)
        print(f"\n{raised} alerts fired while the story unfolded, each once, each on a real change.")
        msp = tell_msp_story(connection_string)
        if report:
            print(f"\nHTML report of the fleet at first sight: {report}")
        # The command as a newcomer can type it right after `make demo`: authwatch lives in the venv, not on PATH.
        print(f"Dashboard: {_command()} serve --demo   (then open http://127.0.0.1:8710/dashboard)")
    # The MSP story ends with two customers needing a fix (scripted: exit 1); 2 is a story that could not run.
    return 0 if all(outcome.failure is None for outcome in outcomes) and msp != 2 else 1


def _command() -> str:
    """How to run authwatch from where the user is: the venv's script by its path when it is not on PATH."""
    import os
    import shutil

    script = os.path.join(os.path.dirname(sys.executable), "authwatch")
    if shutil.which("authwatch") == script or not os.path.exists(script):
        return "authwatch"
    relative = os.path.relpath(script)
    return relative if not relative.startswith("..") else script


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(argparse.Namespace()))
