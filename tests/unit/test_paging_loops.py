"""Paging that loops ends with the source's error, not silently (the simulator serves honest nextLinks, so a loop
is played here by stand-ins for the transport: the loop guard itself is what is under test)."""

from __future__ import annotations

import asyncio
import json

import httpx

from shared.collect import exchange, graph
from shared.collect.errors import IncompleteRead, transport_error


class LoopingAdapter:
    """Every page answers the same nextLink."""

    def __init__(self) -> None:
        self.requests = 0

    async def send_primitive_async(self, info, kind, errors):
        self.requests += 1
        return json.dumps({"value": [{"id": self.requests}], "@odata.nextLink": "https://graph/next?x=1"}).encode()


def test_a_graph_nextlink_loop_is_an_incomplete_read():
    adapter = LoopingAdapter()
    first = {"value": [{"id": 0}], "@odata.nextLink": "https://graph/next?x=1"}
    try:
        asyncio.run(graph._pages(adapter, first, None, "graph.signIns"))
    except IncompleteRead as error:
        problem = transport_error(error)
    else:
        raise AssertionError("a looping nextLink must not end as a complete answer")
    assert problem.code == "NextLinkLoop" and "graph.signIns" in problem.message
    assert adapter.requests == 1  # the repeated link is refused, not fetched again


def test_an_exchange_nextlink_loop_is_the_sources_error():
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"value": [{"Identity": "x"}],
                                         "@odata.nextLink": "https://outlook.example/adminapi/beta/t/InvokeCommand?$skiptoken=1"})

    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            source = next(s for s in exchange.EXCHANGE_SOURCES if s.name == "casMailboxes")
            return await exchange.read_source(http, "https://outlook.example", "t", "token", source)

    value, error = asyncio.run(go())
    assert value is None and error.code == "NextLinkLoop" and "exchange.casMailboxes" in error.message
