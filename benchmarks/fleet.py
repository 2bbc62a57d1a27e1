"""Fleet benchmark: one full cycle over N simulated tenants through the queue worker's code path, at Microsoft's
documented throttling limits, then a second unchanged cycle (steady state).

    python -m benchmarks.fleet --tenants N [--latency-ms L] [--concurrency C] [--instances K] [--json FILE]

Azurite plays Table + Queue storage; the simulator (in its own process, so it has a core of its own) plays Entra,
Graph and Exchange with the limits on and L ms of latency per request. Prints and writes: tenants, wall_s,
lower_bound_s (from the limits, the latency and the requests actually made), ratio, throttled_responses,
requests_per_tenant (by endpoint and total), table_transactions_per_tenant, peak_rss_mb, cold_import_s — for the
first cycle and for the steady state. Numbers, not a test.

Without --instances (or with 0) the cycle runs in this process: the fan-out, then every message through the worker's
code path, C at a time. With --instances K, K worker processes play Functions instances: each imports function_app,
pulls the Azurite `evaluations` queue with host.json's batch settings and calls the app's queue-trigger function
(benchmarks/fleet_instances.py, benchmarks/fleet_worker.py); per cycle it adds CPU per tenant per process, the budget
table's storage transactions and peak RSS per process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
SECRET_SETTING = "AUTHWATCH_BENCH_SECRET"
APP = {"clientId": "b3ac0000-0000-4000-8000-000000000001", "clientSecret": "bench-secret"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORTS_PER_10S = 122  # per app across all tenants (platform-facts.md)
REPORTS_WINDOW_S = 10.5  # the window plus the monitor's safety margin (shared/collect/budget.py)


def tenant_id(index: int) -> str:
    return f"{index:08x}-be0c-4000-8000-000000000000"


def fleet_scenario(tenants: int, latency_ms: int) -> dict[str, Any]:
    """Realistic mixed configurations: most tenants healthy, some with the stories the demo tells."""
    from simulator.demo_fleet import BLOCK_POLICY, _mailboxes, _policy, _signin, _tenant

    made = []
    for index in range(tenants):
        kind = index % 10
        made.append(_tenant(
            tenant_id(index), f"Tenant {index:04d}", "benchmark",
            policies=[] if kind == 3 else [_policy(state="enabledForReportingButNotEnforced")] if kind == 1
            else [dict(BLOCK_POLICY)],
            security_defaults=kind == 3, smtp_auth_disabled="False" if kind == 2 else True,
            mailboxes=_mailboxes(40, f"t{index}.example",
                                 scanner={"SmtpClientAuthenticationDisabled": False if kind == 4 else None}),
            signins=[_signin("2026-11-23T07:30:00Z", f"user@t{index}.example", "IMAP4")] if kind == 5 else []))
    return {"app": dict(APP), "tenants": made, "latencyMs": latency_ms, "limits": {"enabled": True}}


def _simulator_process(scenario: dict[str, Any], conn: Any) -> None:
    from simulator import Simulator

    sim = Simulator(scenario).start()
    conn.send({"url": sim.url, "graph": sim.graph_url, "ca": sim.ca_path})
    while True:
        command = conn.recv()
        if command == "counts":
            conn.send({"requests": dict(sim.request_counts), "cpu_s": time.process_time(),
                       "throttled": dict(getattr(sim, "throttled_counts", Counter()))})
            sim.reset_stats()
        elif command == "stop":
            sim.stop()
            conn.send("stopped")
            return


class TableCounter:
    """Counts HTTP requests to the Table endpoint: each is one storage transaction (a batch counts once)."""

    def __init__(self, table_port: int) -> None:
        self.port, self.count = str(table_port), 0

    def install(self) -> None:
        from azure.core.pipeline.transport import AioHttpTransport

        original = AioHttpTransport.send
        counter = self

        async def send(transport: Any, request: Any, **kwargs: Any) -> Any:
            if f":{counter.port}/" in request.url:
                counter.count += 1
            return await original(transport, request, **kwargs)

        AioHttpTransport.send = send  # measurement only: the benchmark's own process


def _timespan_s(value: str) -> int:
    """host.json's "hh:mm:ss" as seconds."""
    hours, minutes, seconds = (int(part) for part in value.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def host_queues() -> dict[str, int]:
    """host.json's queue settings (the host's defaults where it is silent), times in seconds. receiveVisibility is
    how long a received message stays invisible: functionTimeout (the host renews it while the function runs)."""
    with open(os.path.join(ROOT, "host.json"), encoding="utf-8") as handle:
        host = json.load(handle)
    queues = host.get("extensions", {}).get("queues", {})
    return {"batchSize": int(queues.get("batchSize", 16)), "newBatchThreshold": int(queues.get("newBatchThreshold", 8)),
            "maxDequeueCount": int(queues.get("maxDequeueCount", 5)),
            "visibilityTimeout": _timespan_s(queues.get("visibilityTimeout", "00:00:00")),
            "receiveVisibility": _timespan_s(host.get("functionTimeout", "00:10:00"))}


def host_concurrency() -> int:
    """How many queue messages one Functions instance works on at once: batchSize + newBatchThreshold (host.json)."""
    queues = host_queues()
    return queues["batchSize"] + queues["newBatchThreshold"]


def group_cpu_s(group: int) -> float:
    """User + system CPU of every live process in a process group (Azurite runs in its own)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == group:
            total += sum(int(value) for value in fields[11:13])
    return total / os.sysconf("SC_CLK_TCK")


def cold_import_s() -> float:
    code = "import time; t = time.perf_counter(); import function_app; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    return round(float(done.stdout.strip().splitlines()[-1]), 3)


def lower_bound(report_requests: int, latency_s: float, chain_requests: int = 4) -> float:
    """What physics allows: the fleet-wide reports budget (122 per 10 s per app) or one tenant's chain of
    sequential round trips (token → $batch → sign-ins; Exchange token → cmdlets), whichever is longer."""
    windows = math.ceil(report_requests / REPORTS_PER_10S)
    return round(max(10.0 * (windows - 1) + latency_s * 2, chain_requests * latency_s), 3)


async def run_cycle(fleet: Any, now: datetime, concurrency: int, counter: TableCounter) -> tuple[float, int, int]:
    """The timer's fan-out, then every queued message through the worker's function, as the host would run them.
    Returns the wall time of the whole cycle and the Table transactions of the fan-out and of the workers."""
    from shared.cycle.fleet import EvaluationFailed, evaluate_registered, fan_out

    started, cpu = time.perf_counter(), time.process_time()
    counter.count = 0
    await fan_out(fleet, now=now)
    fan_out_tables = counter.count
    messages = await fleet.evaluations.receive_all(limit=10**6)
    counter.count = 0
    gate = asyncio.Semaphore(concurrency)

    failures: Counter[str] = Counter()

    async def one(message: dict[str, Any]) -> None:
        # As the host does: a failed message is delivered again (host.json maxDequeueCount), here at once.
        for attempt in range(5):
            async with gate:
                try:
                    await evaluate_registered(fleet, message["tenantId"], now=now, message=message)
                    return
                except EvaluationFailed as error:
                    failures[f"{error}: {error.__cause__!r}"[:200]] += 1

    await asyncio.gather(*(one(message) for message in messages))
    for reason, count in failures.items():
        print(f"  {count} evaluation attempt(s) failed and were retried: {reason}", file=sys.stderr)
    print(f"  monitor CPU {time.process_time() - cpu:.1f} s", file=sys.stderr)
    return time.perf_counter() - started, fan_out_tables, counter.count


def summarise(label: str, tenants: int, wall: float, counts: dict[str, Any], tables: int, fan_out_tables: int,
              latency_s: float) -> dict[str, Any]:
    requests = Counter(counts["requests"])
    reports = requests.get("graph.signIns", 0) + requests.get("graph.directoryAudits", 0)
    bound = lower_bound(reports, latency_s)
    per_tenant = {endpoint: round(n / tenants, 2) for endpoint, n in sorted(requests.items())}
    # Items inside a $batch are counted under their own endpoint (they count against throttling) but ride in the
    # batch's one round trip: "total" is HTTP requests to Microsoft, "throttling_units" what the limits see.
    from shared.collect.graph import BATCHED

    units = sum(count for endpoint, count in requests.items() if endpoint != "graph.batch")
    per_tenant["total"] = round((sum(requests.values()) - len(BATCHED) * requests.get("graph.batch", 0)) / tenants, 2)
    per_tenant["throttling_units"] = round(units / tenants, 2)
    return {"cycle": label, "tenants": tenants, "wall_s": round(wall, 3), "lower_bound_s": bound,
            "ratio": round(wall / bound, 3) if bound else None,
            "throttled_responses": sum(counts["throttled"].values()), "throttled_by_endpoint": counts["throttled"],
            "requests_per_tenant": per_tenant,
            "table_transactions_per_tenant": round(tables / tenants, 2),
            "fan_out_table_transactions_per_tenant": round(fan_out_tables / tenants, 2)}


async def bench(tenants: int, latency_ms: int, concurrency: int) -> dict[str, Any]:
    from shared.collect import MicrosoftEndpoints
    from shared.collect.credentials import CredentialSpec
    from shared.cycle.fleet import EVALUATIONS_QUEUE, Fleet
    from shared.cycle.service import Monitor
    from shared.storage.queues import ALERTS_QUEUE, JsonQueue
    from shared.storage.tenant_store import TenantStore
    from shared.tenants.config import TenantConfig
    from shared.tenants.registry import TenantRegistry
    from simulator.azurite import Azurite

    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_simulator_process, args=(fleet_scenario(tenants, latency_ms), child), daemon=True)
    process.start()
    where = parent.recv()
    with Azurite() as azurite:
        endpoints = MicrosoftEndpoints(authority=where["url"], graph=where["graph"], exchange=where["url"],
                                       ca_bundle=where["ca"])
        connection = azurite.connection_string
        env = {SECRET_SETTING: APP["clientSecret"]}
        fleet = Fleet(TenantRegistry.from_connection_string(connection),
                      Monitor(TenantStore.from_connection_string(connection),
                              JsonQueue.from_connection_string(connection, ALERTS_QUEUE), endpoints),
                      JsonQueue.from_connection_string(connection, EVALUATIONS_QUEUE), env=env)
        await fleet.create()
        ids = [tenant_id(index) for index in range(tenants)]
        os.environ.update(env)
        spec = CredentialSpec(mode="secret", client_id=APP["clientId"], secret_setting=SECRET_SETTING)
        for tenant in ids:
            await fleet.registry.add(TenantConfig(tenant_id=tenant, display_name=tenant, credential=spec))
        parent.send("counts")
        sim_cpu = parent.recv()["cpu_s"]  # setup traffic is not part of the cycle
        counter = TableCounter(int(azurite.table_endpoint.rsplit(":", 1)[1].split("/")[0]))
        counter.install()
        cycles = []
        azurite_group = azurite._proc.pid if azurite._proc else 0
        azurite_cpu = group_cpu_s(azurite_group)
        # The second cycle still sends the first one's alerts out of the outbox check; the third is steady.
        for number, label in enumerate(("first", "second", "steady")):
            if number:
                # Real cycles are 15 minutes apart, so each starts with the reports budget unused (here, in the
                # monitor's limiter and the simulator's counters alike); back to back, the previous cycle's last
                # window would still be full.
                await asyncio.sleep(REPORTS_WINDOW_S)
            print(f"  {label} cycle over {tenants} tenants …", file=sys.stderr, flush=True)
            wall, fan_out_tables, tables = await run_cycle(fleet, NOW + timedelta(minutes=15 * number),
                                                           concurrency, counter)
            parent.send("counts")
            counts = parent.recv()
            print(f"  simulator CPU {counts['cpu_s'] - sim_cpu:.1f} s, "
                  f"Azurite CPU {group_cpu_s(azurite_group) - azurite_cpu:.1f} s", file=sys.stderr)
            azurite_cpu = group_cpu_s(azurite_group)
            sim_cpu = counts["cpu_s"]
            cycles.append(summarise(label, tenants, wall, counts, tables, fan_out_tables, latency_ms / 1000))
        await fleet.close()
    parent.send("stop")
    parent.recv()
    process.join(timeout=10)
    return {"tenants": tenants, "latency_ms": latency_ms, "concurrency": concurrency, "cycles": cycles,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=host_concurrency(),
                        help="tenants evaluated at once in this process (default: what host.json lets one Functions "
                             "instance run at once)")
    parser.add_argument("--instances", type=int, default=0, metavar="K",
                        help="K worker processes pulling the real queue as Functions instances would (host.json's "
                             "batch settings; --concurrency is then unused); 0: everything in this process")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    # A terminated run (CI timeout, `kill`) unwinds like Ctrl-C, so Azurite (its own process group) is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    if args.instances > 0:
        from benchmarks.fleet_instances import bench_instances, print_cycle

        result = asyncio.run(bench_instances(args.tenants, args.latency_ms, args.instances))
        result["cold_import_s"] = cold_import_s()
        for cycle in result["cycles"]:
            print_cycle(cycle)
        print(f"peak RSS {result['peak_rss_mb']} MB (largest instance), cold import of function_app "
              f"{result['cold_import_s']} s")
        return _emit(result, args.json)
    result = asyncio.run(bench(args.tenants, args.latency_ms, args.concurrency))
    result["cold_import_s"] = cold_import_s()
    for cycle in result["cycles"]:
        print(f"{cycle['cycle']:>6}: {cycle['tenants']} tenants in {cycle['wall_s']} s "
              f"(lower bound {cycle['lower_bound_s']} s, ratio {cycle['ratio']}), "
              f"{cycle['throttled_responses']} throttled, {cycle['requests_per_tenant']['total']} Microsoft "
              f"requests and {cycle['table_transactions_per_tenant']} Table transactions per tenant")
    print(f"peak RSS {result['peak_rss_mb']} MB, cold import of function_app {result['cold_import_s']} s")
    return _emit(result, args.json)


def _emit(result: dict[str, Any], path: str | None) -> int:
    print(json.dumps(result, indent=2))
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
