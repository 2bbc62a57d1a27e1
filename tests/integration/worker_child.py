"""A worker process for crash tests: evaluates one tenant like the queue worker does, optionally killing itself
(SIGKILL, no cleanup, no finally blocks) at a chosen point.

    python -m tests.integration.worker_child '<json config>'

config: {"connection": ..., "url": ..., "graph": ..., "ca": ..., "tenant": ..., "clientId": ..., "secret": ...,
         "now": ISO, "crashAt": "enqueue" | "mark_sent" | null}
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from shared.collect import MicrosoftEndpoints, TenantAccess
from shared.cycle.service import Monitor, evaluate_tenant
from shared.model import parse_time
from shared.storage.queues import ALERTS_QUEUE, JsonQueue
from shared.storage.tenant_store import TenantStore


def die(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


async def main(config: dict) -> None:
    if config.get("crashAt") == "enqueue":
        JsonQueue.send = die  # the commit has happened; the first alert never reaches the queue
    elif config.get("crashAt") == "mark_sent":
        TenantStore.mark_sent = die  # alerts are on the queue; the outbox still says pending
    endpoints = MicrosoftEndpoints(authority=config["url"], graph=config["graph"], exchange=config["url"],
                                   ca_bundle=config["ca"])
    monitor = Monitor(TenantStore.from_connection_string(config["connection"]),
                      JsonQueue.from_connection_string(config["connection"], ALERTS_QUEUE), endpoints)
    await monitor.create()
    access = TenantAccess(config["tenant"], config["clientId"], config["secret"])
    outcome = await evaluate_tenant(access, monitor, now=parse_time(config["now"], "now"))
    await monitor.close()
    print(json.dumps({"failure": outcome.failure, "events": len(outcome.events), "enqueued": outcome.enqueued}))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
