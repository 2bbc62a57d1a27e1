"""Real SDK round trips against the storage fixture, and Azurite lifecycle checks.

These prove that the pinned Azurite speaks the table/queue features authwatch
uses (upsert, partition queries, 100-entity transactions, queue messages) and
that simulator.azurite can restart it without losing endpoints or data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.queue import QueueClient

from simulator.azurite import BIN_ENV, Azurite, AzuriteError
from tests.conftest import EXTERNAL_STORAGE_ENV

pytestmark = pytest.mark.integration

needs_local_azurite = pytest.mark.skipif(
    bool(os.environ.get(EXTERNAL_STORAGE_ENV)),
    reason=f"Azurite lifecycle test; skipped while {EXTERNAL_STORAGE_ENV} is set",
)


def _name(prefix: str) -> str:
    """Unique table/queue name: the session Azurite is shared by all tests."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture
def table(storage_connection_string: str) -> Iterator[TableClient]:
    service = TableServiceClient.from_connection_string(storage_connection_string)
    client = service.create_table(_name("awtest"))
    yield client
    service.delete_table(client.table_name)


@pytest.fixture
def queue(storage_connection_string: str) -> Iterator[QueueClient]:
    client = QueueClient.from_connection_string(storage_connection_string, _name("awtest-"))
    client.create_queue()
    yield client
    client.delete_queue()


def test_table_upsert_and_query_by_partition(table: TableClient) -> None:
    for tenant, user in [("t1", "alice"), ("t1", "bob"), ("t2", "carol")]:
        table.upsert_entity({"PartitionKey": tenant, "RowKey": user, "legacy": 1})
    # Upsert again: merge must update, not duplicate.
    table.upsert_entity({"PartitionKey": "t1", "RowKey": "bob", "legacy": 5}, mode=UpdateMode.MERGE)

    rows = list(table.query_entities("PartitionKey eq @pk", parameters={"pk": "t1"}))
    assert sorted((e["RowKey"], e["legacy"]) for e in rows) == [("alice", 1), ("bob", 5)]
    assert table.get_entity("t2", "carol")["legacy"] == 1


def test_table_transaction_of_100_entities(table: TableClient) -> None:
    ops = [("upsert", {"PartitionKey": "batch", "RowKey": f"{i:03d}", "n": i}) for i in range(100)]
    results = table.submit_transaction(ops)
    assert len(results) == 100
    rows = list(table.query_entities("PartitionKey eq 'batch'"))
    assert [e["n"] for e in sorted(rows, key=lambda e: e["RowKey"])] == list(range(100))


def test_queue_send_receive_delete(queue: QueueClient) -> None:
    queue.send_message('{"tenant": "t1"}')
    received = list(queue.receive_messages(max_messages=5, visibility_timeout=30))
    assert [m.content for m in received] == ['{"tenant": "t1"}']
    queue.delete_message(received[0])
    assert queue.peek_messages(max_messages=5) == []
    assert queue.get_queue_properties().approximate_message_count == 0


@needs_local_azurite
def test_restart_keeps_endpoints_and_data() -> None:
    with Azurite() as az:
        before = (az.connection_string, az.table_endpoint, az.queue_endpoint, az.blob_endpoint)
        tables = TableServiceClient.from_connection_string(az.connection_string)
        tables.create_table("restart").upsert_entity({"PartitionKey": "p", "RowKey": "r", "v": 42})
        queue = QueueClient.from_connection_string(az.connection_string, "restart")
        queue.create_queue()
        queue.send_message("survives")

        az.stop()
        assert not az.running
        az.start()

        assert az.running
        assert (az.connection_string, az.table_endpoint, az.queue_endpoint, az.blob_endpoint) == before
        # Fresh clients: nothing cached from before the restart.
        tables = TableServiceClient.from_connection_string(az.connection_string)
        assert tables.get_table_client("restart").get_entity("p", "r")["v"] == 42
        queue = QueueClient.from_connection_string(az.connection_string, "restart")
        assert [m.content for m in queue.peek_messages()] == ["survives"]


@needs_local_azurite
def test_context_manager_cleans_up_on_exception() -> None:
    with pytest.raises(KeyboardInterrupt):
        with Azurite() as az:
            pid, data_dir = az.pid, az.data_dir
            raise KeyboardInterrupt  # what Ctrl-C looks like inside the block
    assert not az.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not orphaned
    assert not data_dir.exists()


def test_missing_binary_names_make_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(BIN_ENV, str(tmp_path / "no-such-azurite"))
    az = Azurite()
    try:
        with pytest.raises(AzuriteError, match="make install"):
            az.start()
        assert not az.running
    finally:
        az.close()
