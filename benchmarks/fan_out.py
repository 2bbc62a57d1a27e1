"""Fan-out benchmark: the timer's fan-out over N due tenants against Azurite.

    python -m benchmarks.fan_out --tenants N [--concurrency C] [--json FILE]

Starts Azurite, registers N tenants (one through the registry, the rest cloned from its row in batch upserts: setup,
not measured), then times `fan_out` — a lease claim and a queue send per tenant, C tenants at a time — and a second
fan-out right after it (every lease still held: nothing is queued). Prints, per run: wall seconds, tenants queued,
the HTTP requests made to the Table and to the Queue endpoint (each is one storage transaction), the monitor's CPU
and Azurite's, and the process's peak RSS. Numbers, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from benchmarks.fleet import group_cpu_s

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
BATCH = 100  # entities per Table batch transaction (the service's maximum)
SETUP_BATCHES_AT_ONCE = 8


def tenant_id(index: int) -> str:
    return f"{index:08x}-fa00-4000-8000-000000000000"


class PortCounter:
    """Counts HTTP requests per endpoint port (Table, Queue) as the SDKs send them, retries included."""

    def __init__(self, ports: dict[int, str]) -> None:
        self.names = {f":{port}/": name for port, name in ports.items()}
        self.counts: Counter[str] = Counter()

    def install(self) -> None:
        from azure.core.pipeline.transport import AioHttpTransport

        original = AioHttpTransport.send
        counter = self

        async def send(transport: Any, request: Any, **kwargs: Any) -> Any:
            for marker, name in counter.names.items():
                if marker in request.url:
                    counter.counts[name] += 1
            return await original(transport, request, **kwargs)

        AioHttpTransport.send = send  # measurement only: the benchmark's own process


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


async def register(connection: str, tenants: int) -> None:
    """One tenant through TenantRegistry.add (so the row has exactly the registry's shape), the others cloned from it
    in batch upserts straight into the registry table."""
    from azure.data.tables.aio import TableClient

    from shared.collect.credentials import CredentialSpec
    from shared.tenants.config import TenantConfig
    from shared.tenants.registry import PARTITION, TABLE, TenantRegistry

    spec = CredentialSpec(mode="secret", client_id="b3ac0000-0000-4000-8000-000000000001",
                          secret_setting="AUTHWATCH_BENCH_SECRET")
    async with TenantRegistry.from_connection_string(connection) as registry:
        await registry.create()
        await registry.add(TenantConfig(tenant_id=tenant_id(0), display_name="Tenant 000000", credential=spec))
    async with TableClient.from_connection_string(connection, TABLE) as table:
        model = dict(await table.get_entity(PARTITION, tenant_id(0)))
        gate = asyncio.Semaphore(SETUP_BATCHES_AT_ONCE)

        async def batch(start: int) -> None:
            rows = [{**model, "RowKey": tenant_id(index), "DisplayName": f"Tenant {index:06d}"}
                    for index in range(start, min(start + BATCH, tenants))]
            async with gate:
                await table.submit_transaction([("upsert", row) for row in rows])

        await asyncio.gather(*(batch(start) for start in range(1, tenants, BATCH)))


async def timed(label: str, fleet: Any, counter: PortCounter, azurite_group: int, concurrency: int,
                now: datetime) -> dict[str, Any]:
    from shared.cycle.fleet import fan_out

    counter.counts.clear()
    azurite_cpu, cpu, started = group_cpu_s(azurite_group), time.process_time(), time.perf_counter()
    result = await fan_out(fleet, now=now, concurrency=concurrency)
    wall = time.perf_counter() - started
    return {"run": label, "wall_s": round(wall, 2), "queued": len(result.queued), "in_flight": result.in_flight,
            "failed": result.failed, "table_requests": counter.counts["table"],
            "queue_requests": counter.counts["queue"], "monitor_cpu_s": round(time.process_time() - cpu, 2),
            "azurite_cpu_s": round(group_cpu_s(azurite_group) - azurite_cpu, 2)}


async def bench(tenants: int, concurrency: int) -> dict[str, Any]:
    from shared.collect import MicrosoftEndpoints
    from shared.cycle.fleet import EVALUATIONS_QUEUE, Fleet
    from shared.cycle.service import Monitor
    from shared.storage.queues import ALERTS_QUEUE, JsonQueue
    from shared.storage.tenant_store import TenantStore
    from shared.tenants.registry import TenantRegistry
    from simulator.azurite import Azurite

    with Azurite() as azurite:
        connection = azurite.connection_string
        started = time.perf_counter()
        await register(connection, tenants)
        print(f"  registered {tenants} tenants in {time.perf_counter() - started:.1f} s (setup)", file=sys.stderr)
        counter = PortCounter({_port(azurite.table_endpoint): "table", _port(azurite.queue_endpoint): "queue"})
        counter.install()
        fleet = Fleet(TenantRegistry.from_connection_string(connection),
                      Monitor(TenantStore.from_connection_string(connection),
                              JsonQueue.from_connection_string(connection, ALERTS_QUEUE), MicrosoftEndpoints()),
                      JsonQueue.from_connection_string(connection, EVALUATIONS_QUEUE))
        try:
            await fleet.evaluations.create()
            group = azurite.pid or 0
            runs = [await timed("first", fleet, counter, group, concurrency, NOW),
                    await timed("again", fleet, counter, group, concurrency, NOW)]
            properties = await fleet.evaluations._client.get_queue_properties()
            messages = properties.approximate_message_count
        finally:
            await fleet.close()
    return {"tenants": tenants, "concurrency": concurrency, "runs": runs, "messages_on_queue": messages,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    from shared.cycle.fleet import FAN_OUT_CONCURRENCY

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=FAN_OUT_CONCURRENCY)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    # A terminated run unwinds like Ctrl-C, so Azurite (its own process group) is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    result = asyncio.run(bench(args.tenants, args.concurrency))
    for run in result["runs"]:
        print(f"{run['run']:>5}: {result['tenants']} tenants, concurrency {result['concurrency']}: "
              f"{run['wall_s']} s wall, {run['queued']} queued, {run['in_flight']} in flight, {run['failed']} failed; "
              f"{run['table_requests']} Table + {run['queue_requests']} Queue requests; "
              f"CPU monitor {run['monitor_cpu_s']} s, Azurite {run['azurite_cpu_s']} s")
    print(f"{result['messages_on_queue']} messages on the queue; peak RSS {result['peak_rss_mb']} MB")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
