"""`python -m benchmarks.fleet --instances K`: the fleet benchmark in the deployment's shape. K worker processes
(benchmarks/fleet_worker.py), each a simulated Functions instance with its own event loop and request budget, pull
the real `evaluations` queue in Azurite with host.json's batch settings and run the app's `evaluate_tenant`; this
process plays the platform: Azurite, the simulator (its own process, as in the in-process mode), the registry, and
the timer's fan-out (`shared.cycle.fleet.fan_out`) at the start of each cycle, while the workers already poll.

A cycle ends when the queue is empty: Azure's (and Azurite's) approximate message count includes invisible
messages, and a worker deletes a message only when its function has returned, so a count of 0 after the fan-out
means nothing queued and nothing in flight. Then each worker reports its cycle over its Pipe: CPU (process_time),
tenants evaluated, failed attempts, Table transactions split into the budget table's and the others, peak RSS.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import sys
import time
from datetime import timedelta
from typing import Any

from benchmarks.fleet_worker import BUDGET_TABLE, POISON_SUFFIX, SplitTableCounter, worker_main

END_POLL_S = 0.1
CYCLE_LIMIT_S = 3 * 3600  # a cycle that does not end is a broken run: stop it


def app_settings(connection: str, where: dict[str, str]) -> dict[str, str]:
    """What shared.settings.Settings.from_env reads, as the Function App's settings would carry it."""
    from benchmarks.fleet import APP, SECRET_SETTING

    return {"AUTHWATCH_STORAGE_CONNECTION_STRING": connection, "AzureWebJobsStorage": connection,
            "AUTHWATCH_AUTHORITY_HOST": where["url"], "AUTHWATCH_GRAPH_URL": where["graph"],
            "AUTHWATCH_EXCHANGE_URL": where["url"], "AUTHWATCH_CA_BUNDLE": where["ca"],
            SECRET_SETTING: APP["clientSecret"]}


class Worker:
    def __init__(self, index: int, env: dict[str, str], table_port: int, cfg: dict[str, Any]) -> None:
        self.index = index
        self.conn, child = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("spawn").Process(
            target=worker_main, args=(index, env, child, table_port, cfg), daemon=True,
            name=f"authwatch-instance-{index}")
        self.process.start()

    async def recv(self) -> Any:
        loop = asyncio.get_running_loop()
        while not await loop.run_in_executor(None, self.conn.poll, 0.5):
            if not self.process.is_alive():
                raise RuntimeError(f"instance {self.index} (pid {self.process.pid}) exited with code "
                                   f"{self.process.exitcode}; its traceback is above")
        return self.conn.recv()

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(("stop",))
            except OSError:
                pass
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)


async def wait_until_drained(queue: Any, workers: list[Worker]) -> None:
    started = time.perf_counter()
    while (await queue.get_queue_properties()).approximate_message_count:
        for worker in workers:
            if not worker.process.is_alive():
                raise RuntimeError(f"instance {worker.index} exited with code {worker.process.exitcode}")
        if time.perf_counter() - started > CYCLE_LIMIT_S:
            raise RuntimeError(f"the evaluations queue did not drain in {CYCLE_LIMIT_S} s")
        await asyncio.sleep(END_POLL_S)


def summarise_instances(label: str, tenants: int, wall: float, counts: dict[str, Any], reports: list[dict[str, Any]],
                        fan_out: SplitTableCounter, latency_s: float) -> dict[str, Any]:
    from benchmarks.fleet import lower_bound, summarise

    budget = sum(report["budget_table_transactions"] for report in reports)
    other = sum(report["other_table_transactions"] for report in reports)
    cycle = summarise(label, tenants, wall, counts, budget + other, fan_out.budget + fan_out.other, latency_s)
    evaluated = sum(report["evaluated"] for report in reports)
    cpu = sum(report["cpu_s"] for report in reports)
    per_process = [round(1000 * r["cpu_s"] / r["evaluated"], 1) if r["evaluated"] else None for r in reports]
    failures: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for report in reports:
        for reason, count in report["failures"].items():
            failures[reason] = failures.get(reason, 0) + count
        for kind, count in report["table_requests_by_kind"].items():
            kinds[kind] = kinds.get(kind, 0) + count
    # The lower bound counts the reports requests made, 429s included; without them: what the cycle needed.
    throttled_reports = sum(n for endpoint, n in counts["throttled"].items()
                            if endpoint in ("graph.signIns", "graph.directoryAudits"))
    needed = sum(counts["requests"].get(e, 0) for e in ("graph.signIns", "graph.directoryAudits")) - throttled_reports
    unthrottled = lower_bound(needed, latency_s)
    cycle.update({
        "lower_bound_without_throttled_s": unthrottled,
        "ratio_without_throttled": round(wall / unthrottled, 3) if unthrottled else None,
        "instances": len(reports),
        "tenants_evaluated": evaluated,
        "tenants_by_process": [report["evaluated"] for report in reports],
        "failed_attempts": sum(report["failed_attempts"] for report in reports), "failures": failures,
        "poisoned": sum(report["poisoned"] for report in reports),
        "cpu_s_by_process": [report["cpu_s"] for report in reports],
        "cpu_ms_per_tenant_by_process": per_process,
        "cpu_ms_per_tenant_mean": round(1000 * cpu / evaluated, 1) if evaluated else None,  # all CPU / all tenants
        # The emulated Functions host's queue listener (receive, delete), apart: on Azure it is the .NET host's.
        "host_cpu_ms_per_tenant_by_process": [round(1000 * r["host_cpu_s"] / r["evaluated"], 1) if r["evaluated"]
                                              else None for r in reports],
        "budget_table": BUDGET_TABLE,
        "budget_table_transactions": budget,
        "budget_table_transactions_per_tenant": round(budget / tenants, 3),
        "table_transactions_per_tenant_without_budget": round(other / tenants, 2),
        "table_transactions_per_tenant_by_kind": {kind: round(n / tenants, 2) for kind, n in sorted(kinds.items())},
        "fan_out_budget_table_transactions": fan_out.budget,
        "max_in_flight_by_process": [report["max_in_flight"] for report in reports],
        "peak_rss_mb_by_process": [report["peak_rss_mb"] for report in reports],
    })
    return cycle


async def bench_instances(tenants: int, latency_ms: int, instances: int) -> dict[str, Any]:
    from benchmarks.fleet import (APP, NOW, REPORTS_WINDOW_S, SECRET_SETTING, _simulator_process, fleet_scenario,
                                  group_cpu_s, host_queues, tenant_id)
    from shared.bootstrap import build_fleet
    from shared.collect.credentials import CredentialSpec
    from shared.cycle.fleet import EVALUATIONS_QUEUE, fan_out
    from shared.storage.account import StorageAccount
    from shared.tenants.config import TenantConfig
    from simulator.azurite import Azurite

    cfg = host_queues()
    parent, child = multiprocessing.Pipe()
    simulator = multiprocessing.get_context("spawn").Process(
        target=_simulator_process, args=(fleet_scenario(tenants, latency_ms), child), daemon=True)
    simulator.start()
    where = parent.recv()
    workers: list[Worker] = []
    cycles: list[dict[str, Any]] = []
    try:
        with Azurite() as azurite:
            connection = azurite.connection_string
            table_port = int(azurite.table_endpoint.rsplit(":", 1)[1].split("/")[0])
            env = app_settings(connection, where)
            os.environ.update(env)
            fleet = build_fleet(env)  # the timer's wiring, for the fan-out and the registry
            await fleet.create()
            account = StorageAccount(connection_string=connection)
            queue, poison = account.queue(EVALUATIONS_QUEUE), account.queue(EVALUATIONS_QUEUE + POISON_SUFFIX)
            await poison.create_queue()
            spec = CredentialSpec(mode="secret", client_id=APP["clientId"], secret_setting=SECRET_SETTING)
            for index in range(tenants):
                await fleet.registry.add(TenantConfig(tenant_id=tenant_id(index), display_name=tenant_id(index),
                                                      credential=spec))
            workers = [Worker(index, env, table_port, cfg) for index in range(instances)]
            ready = [await worker.recv() for worker in workers]
            print(f"  {instances} instance(s) ready: import of function_app "
                  f"{', '.join(str(r['import_s']) for r in ready)} s; budget table {ready[0]['budget_table']}",
                  file=sys.stderr, flush=True)
            counter = SplitTableCounter(table_port)
            counter.install()
            parent.send("counts")
            sim_cpu = parent.recv()["cpu_s"]  # setup traffic is not part of the cycle
            azurite_group = azurite._proc.pid if azurite._proc else 0
            azurite_cpu = group_cpu_s(azurite_group)
            for number, label in enumerate(("first", "second", "steady")):
                if number:  # cycles start with the reports budget unused, as 15 minutes apart they would
                    await asyncio.sleep(REPORTS_WINDOW_S)
                now = NOW + timedelta(minutes=15 * number)
                print(f"  {label} cycle over {tenants} tenants on {instances} instance(s) …", file=sys.stderr,
                      flush=True)
                counter.reset()
                started = time.perf_counter()
                for worker in workers:
                    worker.conn.send(("start", now.isoformat()))
                queued = await fan_out(fleet, now=now)
                fanned = time.perf_counter() - started
                await wait_until_drained(queue, workers)
                wall = time.perf_counter() - started
                for worker in workers:
                    worker.conn.send(("end",))
                reports = [await worker.recv() for worker in workers]
                parent.send("counts")
                counts = parent.recv()
                print(f"  fan-out queued {len(queued.queued)} in {fanned:.1f} s; instances' CPU "
                      f"{', '.join(str(r['cpu_s']) for r in reports)} s (+ host queue listener "
                      f"{', '.join(str(r['host_cpu_s']) for r in reports)} s); simulator CPU "
                      f"{counts['cpu_s'] - sim_cpu:.1f} s, "
                      f"Azurite CPU {group_cpu_s(azurite_group) - azurite_cpu:.1f} s", file=sys.stderr)
                sim_cpu, azurite_cpu = counts["cpu_s"], group_cpu_s(azurite_group)
                cycle = summarise_instances(label, tenants, wall, counts, reports, counter, latency_ms / 1000)
                cycle["fan_out_s"] = round(fanned, 3)
                cycle["fan_out_failed"] = getattr(queued, "failed", 0)
                for reason, count in cycle["failures"].items():
                    print(f"  {count} evaluation attempt(s) failed (message visible again after "
                          f"{cfg['visibilityTimeout']} s): {reason}", file=sys.stderr)
                cycles.append(cycle)
            # Workers leave the budget ledger as they stop: while Azurite is still there to take it.
            for worker in workers:
                worker.stop()
            workers = []
            await queue.close()
            await poison.close()
            await fleet.close()
    finally:
        for worker in workers:
            worker.stop()
        if simulator.is_alive():
            parent.send("stop")
            parent.recv()
        simulator.join(timeout=10)
    return {"tenants": tenants, "latency_ms": latency_ms, "instances": instances, "host_queues": cfg,
            "instance_import_s": [r["import_s"] for r in ready], "cycles": cycles,
            "peak_rss_mb": max(cycles[-1]["peak_rss_mb_by_process"]),
            "peak_rss_mb_by_process": cycles[-1]["peak_rss_mb_by_process"],
            "parent_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def print_cycle(cycle: dict[str, Any]) -> None:
    throttled = ", ".join(f"{n} {endpoint}" for endpoint, n in sorted(cycle["throttled_by_endpoint"].items()))
    print(f"{cycle['cycle']:>6}: {cycle['tenants']} tenants on {cycle['instances']} instance(s) in {cycle['wall_s']} s "
          f"(lower bound {cycle['lower_bound_s']} s, ratio {cycle['ratio']}; without the 429s' requests "
          f"{cycle['lower_bound_without_throttled_s']} s, {cycle['ratio_without_throttled']}), "
          f"{cycle['throttled_responses']} throttled{f' ({throttled})' if throttled else ''}, CPU {cycle['cpu_ms_per_tenant_mean']} ms/tenant "
          f"(by process {cycle['cpu_ms_per_tenant_by_process']}), {cycle['requests_per_tenant']['total']} Microsoft "
          f"requests and {cycle['table_transactions_per_tenant']} Table transactions per tenant "
          f"({cycle['table_transactions_per_tenant_without_budget']} without the budget table's "
          f"{cycle['budget_table_transactions']}), peak RSS {cycle['peak_rss_mb_by_process']} MB")
