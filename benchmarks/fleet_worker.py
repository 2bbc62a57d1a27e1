"""One simulated Functions instance for `python -m benchmarks.fleet --instances K` (its own process, event loop and
request budget): it imports `function_app` as the Python worker does, and runs the `evaluations` queue trigger the
way the Functions host's queue extension does, with host.json's settings:

* receive up to `batchSize` messages (one GetMessages call, at most 32), run them concurrently, and receive the next
  batch when the messages in flight drop to `newBatchThreshold` (so at most batchSize + newBatchThreshold at once);
* an empty queue is polled again after 50 ms, doubling up to 1 s (the host backs off up to maxPollingInterval, one
  minute by default; shortened here so the start of a cycle is not spent asleep);
* a message is received invisible for `functionTimeout` (the host renews it while the function runs; no function
  here runs that long), deleted when the function returns, and when it raises made visible again after host.json's
  `visibilityTimeout` (30 s: UpdateMessage with that timeout, as the host does — not at once); a message whose
  dequeue count reached `maxDequeueCount` goes to `evaluations-poison` instead (on failure, or when received with a
  higher count).

The function is the app's own `evaluate_tenant` (from get_functions()/get_user_function(), like the e2e tests) called
with the host's `azure.functions.queue.QueueMessage`. One harness liberty: the function's clock is pinned to the
cycle's simulated time (the module's `datetime` is replaced), as the in-process mode passes `now=`, so cycles 15
minutes apart take seconds and the simulated sign-ins fall in the windows they are written for.

On Azure the queue listener is the Functions host, a separate (.NET) process that hands each message to the Python
worker: here it runs on a thread of its own with its own event loop (`_Host`), and the function runs on the
process's main event loop, as the Python worker's. The CPU reported per tenant is the process's minus that thread's
(the monitor's own, as on Azure); the host thread's is reported beside it (`host_cpu_s`).

The parent drives it over a Pipe: ("start", iso_now) begins a cycle, ("end",) ends it (the parent has seen the queue
empty: nothing queued, nothing in flight) and is answered with the cycle's stats, ("stop",) exits.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import resource
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

POLL_MIN_S, POLL_MAX_S = 0.05, 1.0
POISON_SUFFIX = "-poison"


def budget_table_name() -> str:
    """The shared budget's table: the storage module's own constant where it exists, else its planned name."""
    import importlib

    for module in ("shared.storage.budget_ledger", "shared.storage.budget_leases"):
        try:
            value = getattr(importlib.import_module(module), "BUDGET_TABLE", None)
        except ImportError:
            continue
        if isinstance(value, str) and value:
            return value
    return "AuthwatchBudget"


BUDGET_TABLE = budget_table_name()


class SplitTableCounter:
    """HTTP requests to the Table endpoint (one storage transaction each; an entity-group batch counts once), split
    by whether they touch the budget table (its name in the URL path, or in a `$batch` body). Patches
    AioHttpTransport.send in this process only: per-process measurement, like benchmarks.fleet.TableCounter."""

    def __init__(self, table_port: int, budget_table: str = BUDGET_TABLE) -> None:
        self.port, self.budget_table = str(table_port), budget_table
        self.budget = self.other = 0
        self.kinds: Counter[str] = Counter()  # "METHOD table[(…)|()]": where the transactions go

    def reset(self) -> None:
        self.budget = self.other = 0
        self.kinds.clear()

    @staticmethod
    def kind(request: Any) -> str:
        target = request.url.split("?", 1)[0].rsplit("/", 1)[-1]
        table, _, key = target.partition("(")
        return f"{request.method} {table}{'(…)' if key.strip(')') else '()' if _ else ''}"

    def is_budget(self, request: Any) -> bool:
        path = request.url.split("?", 1)[0]
        if f"/{self.budget_table}(" in path or path.endswith(f"/{self.budget_table}"):
            return True
        if path.endswith("/$batch"):
            body = getattr(request, "body", None)
            return isinstance(body, (bytes, bytearray)) and f"/{self.budget_table}(".encode() in body
        return False

    def install(self) -> None:
        from azure.core.pipeline.transport import AioHttpTransport

        original = AioHttpTransport.send
        counter = self

        async def send(transport: Any, request: Any, **kwargs: Any) -> Any:
            if f":{counter.port}/" in request.url:
                counter.kinds[counter.kind(request)] += 1
                if counter.is_budget(request):
                    counter.budget += 1
                else:
                    counter.other += 1
            return await original(transport, request, **kwargs)

        AioHttpTransport.send = send  # measurement only: this worker process


class _CycleClock(datetime):
    """`datetime` with now() pinned to the cycle's simulated time (None: the real clock)."""

    pinned: datetime | None = None

    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        if cls.pinned is None:
            return datetime.now(tz)
        return cls.pinned if tz is None else cls.pinned.astimezone(tz)


@dataclass
class CycleStats:
    worker: int
    pid: int
    evaluated: int = 0  # function returned: message deleted
    failed_attempts: int = 0  # function raised: message visible again later (or poisoned)
    poisoned: int = 0
    receives: int = 0
    received: int = 0
    max_in_flight: int = 0
    failures: Counter[str] = field(default_factory=Counter)


async def _first_page(queue: Any, count: int, visibility_s: int) -> list[Any]:
    """One GetMessages call (the SDK's pager would ask again after a short page)."""
    pages = queue.receive_messages(messages_per_page=count, visibility_timeout=visibility_s).by_page()
    async for page in pages:
        return [message async for message in page]
    return []


class _Host:
    """The Functions host's side: a thread with its own event loop for the queue listener."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="functions-host", daemon=True)
        self.thread.start()
        self._clock = time.pthread_getcpuclockid(self.thread.ident)  # type: ignore[arg-type]

    async def run(self, work: Any) -> Any:
        """Run a coroutine on the host's loop and wait for it from the caller's."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self.loop))

    def cpu_s(self) -> float:
        return time.clock_gettime(self._clock)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


async def _handle(message: Any, evaluate: Any, queue: Any, poison: Any, cfg: dict[str, Any],
                  stats: CycleStats) -> None:
    from azure.functions.queue import QueueMessage  # the host's class: it carries dequeue_count

    msg = QueueMessage(id=message.id, body=message.content.encode("utf-8"), dequeue_count=message.dequeue_count,
                       expiration_time=message.expires_on, insertion_time=message.inserted_on,
                       time_next_visible=message.next_visible_on, pop_receipt=message.pop_receipt)
    try:
        result = evaluate(msg)
        if inspect.isawaitable(result):
            await result
    except Exception as error:  # noqa: BLE001 - the host catches everything a function raises
        stats.failed_attempts += 1
        stats.failures[f"{type(error).__name__}: {error}"[:200]] += 1
        if (message.dequeue_count or 1) >= cfg["maxDequeueCount"]:
            await poison.send_message(message.content)
            await queue.delete_message(message)
            stats.poisoned += 1
        else:
            await queue.update_message(message, visibility_timeout=cfg["visibilityTimeout"])
        return
    await queue.delete_message(message)
    stats.evaluated += 1


async def _guarded(message: Any, evaluate: Any, queue: Any, poison: Any, cfg: dict[str, Any],
                   stats: CycleStats) -> None:
    """A queue call that fails (delete, update, poison) is counted, not left as an unretrieved task error."""
    try:
        await _handle(message, evaluate, queue, poison, cfg, stats)
    except Exception as error:  # noqa: BLE001
        stats.failures[f"queue call: {type(error).__name__}: {error}"[:200]] += 1


async def pump(queue: Any, poison: Any, evaluate: Any, cfg: dict[str, Any], stats: CycleStats,
               stop: asyncio.Event) -> None:
    """The queue listener: batches of batchSize, the next one when in-flight drops to newBatchThreshold."""
    in_flight: set[asyncio.Task[None]] = set()
    idle = POLL_MIN_S
    stopped = asyncio.create_task(stop.wait())
    while not stop.is_set():
        if len(in_flight) > cfg["newBatchThreshold"]:
            await asyncio.wait(in_flight | {stopped}, return_when=asyncio.FIRST_COMPLETED)
            continue
        batch = await _first_page(queue, min(cfg["batchSize"], 32), cfg["receiveVisibility"])
        stats.receives += 1
        if not batch:
            sleeping = asyncio.create_task(asyncio.sleep(idle))
            await asyncio.wait({sleeping, stopped}, return_when=asyncio.FIRST_COMPLETED)
            sleeping.cancel()
            idle = min(idle * 2, POLL_MAX_S)
            continue
        idle = POLL_MIN_S
        stats.received += len(batch)
        for message in batch:
            if (message.dequeue_count or 1) > cfg["maxDequeueCount"]:  # the host poisons it before running it
                await poison.send_message(message.content)
                await queue.delete_message(message)
                stats.poisoned += 1
                continue
            task = asyncio.create_task(_guarded(message, evaluate, queue, poison, cfg, stats))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        stats.max_in_flight = max(stats.max_in_flight, len(in_flight))
    stopped.cancel()
    if in_flight:  # the parent ends a cycle only when nothing is in flight; finish anything left all the same
        await asyncio.wait(in_flight)


def load_evaluate() -> Any:
    """The app as the host indexes it, and its queue-trigger function; the clock pinned for the benchmark."""
    import function_app
    import functions.queues as queues

    functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
    evaluate = functions["evaluate_tenant"].get_user_function()
    if isinstance(getattr(queues, "datetime", None), type):
        queues.datetime = _CycleClock  # type: ignore[misc]
    names = getattr(getattr(evaluate, "__code__", None), "co_names", ())
    if "datetime" not in names:
        print("  fleet worker: evaluate_tenant does not read functions.queues.datetime; its clock is not pinned to "
              "the cycle's simulated time", file=sys.stderr)
    return evaluate


async def serve(index: int, conn: Any, evaluate: Any, counter: SplitTableCounter, cfg: dict[str, Any]) -> None:
    from shared.cycle.fleet import EVALUATIONS_QUEUE
    from shared.settings import Settings

    loop = asyncio.get_running_loop()
    host = _Host()
    storage = Settings.from_env().storage
    queue, poison = storage.queue(EVALUATIONS_QUEUE), storage.queue(EVALUATIONS_QUEUE + POISON_SUFFIX)

    def invoke(message: Any) -> Any:
        """Called by the host's listener (its loop): the function runs on this, the worker's, loop."""
        result = evaluate(message)
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(result, loop)) if inspect.iscoroutine(result) \
            else result

    try:
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command[0] == "stop":
                return
            _CycleClock.pinned = datetime.fromisoformat(command[1])
            stats = CycleStats(worker=index, pid=os.getpid())
            stop = await host.run(_event())
            counter.reset()
            cpu, host_cpu = time.process_time(), host.cpu_s()
            task = asyncio.create_task(host.run(pump(queue, poison, invoke, cfg, stats, stop)))
            ended = loop.run_in_executor(None, conn.recv)
            await asyncio.wait({task, ended}, return_when=asyncio.FIRST_COMPLETED)
            host.loop.call_soon_threadsafe(stop.set)
            await task  # raises if the listener itself broke: the parent sees the worker die
            await ended
            host_cpu_s = host.cpu_s() - host_cpu
            report = asdict(stats)
            report.update(failures=dict(stats.failures), cpu_s=round(time.process_time() - cpu - host_cpu_s, 3),
                          host_cpu_s=round(host_cpu_s, 3),
                          budget_table_transactions=counter.budget, other_table_transactions=counter.other,
                          table_requests_by_kind=dict(counter.kinds),
                          peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
            conn.send(report)
    finally:
        await host.run(queue.close())
        await host.run(poison.close())
        host.stop()


async def _event() -> asyncio.Event:
    return asyncio.Event()  # made on the host's loop, which waits on it


def worker_main(index: int, env: dict[str, str], conn: Any, table_port: int, cfg: dict[str, Any]) -> None:
    """Process entry point (spawn): the app settings in the environment, the app imported, then serve the parent."""
    os.environ.update(env)
    counter = SplitTableCounter(table_port)
    counter.install()
    started = time.perf_counter()
    evaluate = load_evaluate()
    conn.send({"ready": index, "pid": os.getpid(), "import_s": round(time.perf_counter() - started, 3),
               "budget_table": counter.budget_table})
    asyncio.run(serve(index, conn, evaluate, counter, cfg))
