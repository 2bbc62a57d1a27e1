"""Reading the answer of a Graph `$batch`, item by item, without trusting its shape.

Graph answers a batch with `{"responses": [{"id", "status", "headers", "body"}, …]}`, one item per request id, in any
order; the batch itself is 200 even when items fail, and a body that is not JSON comes base64-encoded as a string
(https://learn.microsoft.com/en-us/graph/json-batching). An item authwatch cannot read — a status that is not an
integer HTTP status (`"OK"`, `[200]`, null, true), a body that is neither an object nor absent, an answer that is
not an object or has no id, two answers for one id — is the error of the source it was for (MalformedBatchItem),
never an exception that takes the tenant's other sources down with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.model import SourceError

MALFORMED = "MalformedBatchItem"
# One item's readable answer: (HTTP status, body); None when Graph sent no answer for that id at all.
BatchItem = tuple[int, Any] | SourceError | None


def _malformed(request_id: str, why: str) -> SourceError:
    return SourceError(status=None, code=MALFORMED, message=f"$batch answer for request {request_id}: {why}")


def _request_id(item: Any) -> str | None:
    raw = item.get("id") if isinstance(item, dict) else None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    return raw if isinstance(raw, str) and raw else None


def _read(request_id: str, item: dict[str, Any]) -> BatchItem:
    status, body = item.get("status"), item.get("body")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        return _malformed(request_id, f"its status is not an HTTP status code ({type(status).__name__})")
    if body is not None and not isinstance(body, dict):
        return _malformed(request_id, f"its body is not a JSON object ({type(body).__name__})")
    if status == 200 and body is None:
        return _malformed(request_id, "a 200 answer without a body")
    return status, body


def batch_items(payload: Any, request_ids: Sequence[str]) -> dict[str, BatchItem]:
    """Each request id's answer. Raises ValueError only when the whole answer is not a batch answer (then every
    source is read on its own); a single unreadable item is that request's SourceError.

    An answer Graph did not send at all is None (the caller reads that source again on its own), unless some item
    could not be attributed to a request (not an object, no id): that item may have been this request's, so its
    answer is unreadable rather than missing."""
    responses = payload.get("responses") if isinstance(payload, dict) else None
    if not isinstance(responses, list):
        raise ValueError("the $batch answer has no 'responses' list")
    by_id: dict[str, list[dict[str, Any]]] = {}
    stray = 0
    for item in responses:
        request_id = _request_id(item)
        if request_id is None:
            stray += 1
            continue
        by_id.setdefault(request_id, []).append(item)
    answers: dict[str, BatchItem] = {}
    for request_id in request_ids:
        found = by_id.get(request_id, [])
        if len(found) > 1:
            answers[request_id] = _malformed(request_id, f"{len(found)} answers carry this id")
        elif found:
            answers[request_id] = _read(request_id, found[0])
        elif stray:
            answers[request_id] = _malformed(request_id, f"no answer carries this id, and {stray} answer(s) carry "
                                                         "no id or are not JSON objects")
        else:
            answers[request_id] = None
    return answers


def retry_after_s(payload: Any, request_ids: Sequence[str]) -> float:
    """The longest Retry-After among the answers for `request_ids` (0 when none says one).

    A throttled item carries its own 429 and Retry-After inside the batch's 200: "the individual requests' responses
    will have the 429 status code and a Retry-After header … retry only the failed requests after the delay"
    (https://learn.microsoft.com/en-us/graph/throttling#throttling-and-batching). A value authwatch cannot read as
    whole seconds is ignored here; the re-read's own retry policy still honours the header it then gets."""
    responses = payload.get("responses") if isinstance(payload, dict) else None
    wanted, longest = set(request_ids), 0.0
    for item in responses if isinstance(responses, list) else []:
        if not isinstance(item, dict) or _request_id(item) not in wanted or not isinstance(item.get("headers"), dict):
            continue
        for name, value in item["headers"].items():
            if str(name).lower() == "retry-after" and str(value).strip().isdigit():
                longest = max(longest, float(str(value).strip()))
    return longest
