"""``python -m simulator.throughput [--tenants N] [--requests R] [--concurrency C] [--latency-ms L] [--in-process]``

Measures how many simple Graph GETs (``/organization``) per second the simulator serves to an
``httpx.AsyncClient`` with C concurrent requests, and the simulator's own CPU time per request. By default
the simulator runs in a child process (its own core, as ``benchmarks.fleet`` runs it); ``--in-process``
runs it in a thread of the client's process (the test suite's setup: both share one GIL).
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import ssl
import sys
import time
from typing import Any

APP = "11111111-1111-1111-1111-111111111111"
SECRET = "throughput"


def _scenario(tenants: int, latency_ms: float) -> dict[str, Any]:
    return {"app": {"clientId": APP, "clientSecret": SECRET}, "latencyMs": latency_ms,
            "tenants": [{"tenantId": f"{i:08x}-7e57-4000-8000-000000000000", "displayName": f"Tenant {i}"}
                        for i in range(tenants)]}


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child(scenario: dict[str, Any], conn: Any) -> None:
    from simulator import Simulator

    with Simulator(scenario) as sim:
        conn.send((sim.url, sim.ca_path))
        while conn.recv() == "cpu":
            conn.send(_cpu_self())


async def _measure(url: str, ca: str, tenants: int, total: int, concurrency: int, cpu: Any) -> dict[str, float]:
    import httpx

    verify = ssl.create_default_context(cafile=ca)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(verify=verify, limits=limits, timeout=60) as client:
        auths = []
        for i in range(min(tenants, 20)):
            r = await client.post(f"{url}/{i:08x}-7e57-4000-8000-000000000000/oauth2/v2.0/token",
                                  data={"client_id": APP, "client_secret": SECRET, "grant_type": "client_credentials",
                                        "scope": "https://graph.microsoft.com/.default"})
            auths.append({"Authorization": "Bearer " + r.json()["access_token"]})
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                r = await client.get(f"{url}/v1.0/organization", headers=auths[i % len(auths)])
                if r.status_code != 200:
                    raise RuntimeError(f"unexpected {r.status_code}: {r.text[:200]}")

        await asyncio.gather(*(one(i) for i in range(concurrency * 4)))  # open every connection first
        server0, client0, t0 = cpu(), _cpu_self(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(total)))
        wall = time.perf_counter() - t0
        server_cpu, client_cpu = cpu() - server0, _cpu_self() - client0
    return {"requests_per_s": round(total / wall, 1), "wall_s": round(wall, 3),
            "server_cpu_ms_per_request": round(1000 * server_cpu / total, 3),
            "client_cpu_ms_per_request": round(1000 * client_cpu / total, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--in-process", action="store_true", help="run the simulator in a thread of this process")
    args = parser.parse_args(argv)
    scenario = _scenario(args.tenants, args.latency_ms)
    if args.in_process:
        from simulator import Simulator

        with Simulator(scenario) as sim:
            result = asyncio.run(_measure(sim.url, sim.ca_path, args.tenants, args.requests, args.concurrency,
                                          lambda: 0.0))
        # One process: its CPU time is client + server together.
        result["process_cpu_ms_per_request"] = result.pop("client_cpu_ms_per_request")
        del result["server_cpu_ms_per_request"]
    else:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_child, args=(scenario, child), daemon=True)
        proc.start()
        try:
            url, ca = parent.recv()

            def server_cpu() -> float:
                parent.send("cpu")
                return float(parent.recv())

            result = asyncio.run(_measure(url, ca, args.tenants, args.requests, args.concurrency, server_cpu))
            parent.send("stop")
        finally:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    mode = "in-process" if args.in_process else "separate process"
    cpu = ", ".join(f"{k.replace('_ms_per_request', '').replace('_', ' ')} {v} ms/request"
                    for k, v in result.items() if k.endswith("_ms_per_request"))
    print(f"simulator ({mode}), {args.tenants} tenants, GET /organization, latency {args.latency_ms:g} ms, "
          f"{args.concurrency} concurrent httpx requests: {result['requests_per_s']:.0f} req/s ({cpu})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
