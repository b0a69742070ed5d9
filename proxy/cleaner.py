"""Trace cleaner: raw proxy rows -> one ordered, structured record per session (OneShot's ``cleaned_sessions``).

Incremental: a watermark (the last raw ``rowid`` seen, per raw database) means each run reads only
new rows, so it is cheap to run on every ``oneshot traces`` call or in a ``--watch`` loop while
proxies keep writing. The watermark and the sessions it produced commit in one transaction, so
a rerun or a crash never duplicates nor drops an event. Each Responses-API answer (SSE or JSON)
is parsed into its output items, messages, tool calls and usage; :func:`to_cassette` turns an
exported session into a replay cassette for the harness's scripted model server.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from oneshot_shared import sse
from oneshot_shared.wire import CASSETTE_FORMAT, USAGE_KEYS, usage_from_api
from proxy import redact, tracestore
from proxy.tracestore import RawTrace

FORMAT = "oneshot-trace/1"
_BATCH_ROWS = 500
_CLEAN_SCHEMA = """
CREATE TABLE IF NOT EXISTS cleaned_sessions(session_id TEXT PRIMARY KEY, created_at TEXT, formatted_json TEXT);
CREATE TABLE IF NOT EXISTS cleaner_watermark(raw_db TEXT PRIMARY KEY, last_rowid INTEGER NOT NULL);
"""


def _summarise_items(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(assistant messages, tool calls) of a response's output items."""
    messages, calls = [], []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            text = "".join(part.get("text", "") for part in item.get("content") or [] if isinstance(part, Mapping))
            messages.append({"role": item.get("role", "assistant"), "text": text})
        elif kind == "function_call":
            call = {
                "type": kind,
                "call_id": item.get("call_id"),
                "name": item.get("name"),
                "arguments": item.get("arguments"),
            }
            if item.get("namespace"):
                call["namespace"] = item["namespace"]
            try:
                call["arguments_json"] = json.loads(item.get("arguments") or "null")
            except ValueError:
                call["arguments_json"] = None
            calls.append(call)
        elif kind == "custom_tool_call":
            calls.append(
                {"type": kind, "call_id": item.get("call_id"), "name": item.get("name"), "input": item.get("input")}
            )
    return messages, calls


def model_output(response: Any) -> dict[str, Any] | None:
    """Structured output of one Responses-API answer (SSE stream or JSON body); None if it is not one."""
    items: dict[int, dict[str, Any]] = {}
    final: dict[str, Any] = {}
    status, error, deltas = None, None, []
    if isinstance(response, Mapping) and isinstance(response.get("_raw"), str):
        for event in sse.parse_events(response["_raw"]):
            data = event.data if isinstance(event.data, Mapping) else {}
            kind = data.get("type") or event.event
            if kind == "response.output_item.done" and isinstance(data.get("item"), Mapping):
                items[int(data.get("output_index", len(items)))] = dict(data["item"])
            elif kind == "response.output_text.delta":
                deltas.append(str(data.get("delta", "")))
            elif kind in (
                "response.created",
                "response.in_progress",
                "response.completed",
                "response.failed",
                "response.incomplete",
            ):
                final = dict(data.get("response") or {})
                status = final.get("status") or kind.removeprefix("response.")
                error = final.get("error") or error
            elif kind == "error":
                status, error = "failed", {key: data.get(key) for key in ("code", "message") if key in data}
        if not (items or final or error):
            return None
        if status in ("in_progress", "queued"):
            status = None  # the stream ended before a terminal event
    elif isinstance(response, Mapping) and (response.get("object") == "response" or "output" in response):
        final, status, error = dict(response), response.get("status"), response.get("error")
    elif isinstance(response, Mapping) and isinstance(response.get("error"), Mapping):
        return {"status": "failed", "error": dict(response["error"]), "items": [], "messages": [], "tool_calls": []}
    else:
        return None
    output_items = [items[index] for index in sorted(items)] or list(final.get("output") or [])
    messages, calls = _summarise_items(output_items)
    usage = final.get("usage")
    result: dict[str, Any] = {
        "response_id": final.get("id"),
        "model": final.get("model"),
        "status": status,
        "error": error,
        "items": output_items,
        "messages": messages,
        "tool_calls": calls,
        "usage": usage_from_api(usage) if isinstance(usage, Mapping) else None,
    }
    if deltas and not messages:
        result["partial_text"] = "".join(deltas)  # a stream cut before its message item was done
    return dict(redact.redact(result))  # deltas joined here may reassemble a key split across events


def trace_event(row: RawTrace) -> dict[str, Any]:
    """One transaction in a cleaned session (OneShot's ``request``/``response``/``ts_ms`` plus structure)."""
    meta = row.meta
    timings = meta.get("timings") or {}
    return {
        "id": row.id,
        "rowid": row.rowid,
        "ts_ms": row.ts_ms,
        "method": row.method,
        "url": row.url,
        "status": meta.get("status_code"),
        "error": meta.get("error"),
        "duration_ms": timings.get("response_end_ms"),
        "timings": timings,
        "client_session_id": meta.get("client_session_id"),
        "sse_event_ms": meta.get("sse_event_ms"),
        "request": row.request,
        "response": row.response,
        "output": model_output(row.response),
    }


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat()


def build_session(session_id: str, events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The cleaned record of a session: events in request order, plus totals."""
    ordered = sorted({event["id"]: event for event in events}.values(), key=lambda e: (e["ts_ms"], e["rowid"]))
    usage = dict.fromkeys(USAGE_KEYS, 0)
    models: list[str] = []
    for event in ordered:
        output = event.get("output") or {}
        for key, value in (output.get("usage") or {}).items():
            usage[key] = usage.get(key, 0) + value
        request = event.get("request")
        model = request.get("model") if isinstance(request, Mapping) else None
        if model and model not in models:
            models.append(model)
    return {
        "format": FORMAT,
        "session_id": session_id,
        "created_at": _iso(ordered[0]["ts_ms"]) if ordered else None,
        "n_requests": len(ordered),
        "models": models,
        "usage": usage,
        "traces": ordered,
    }


@dataclass(frozen=True)
class CleanResult:
    new_rows: int
    sessions: tuple[str, ...]
    """Sessions updated by this run."""


def connect_clean(path: str | Path) -> sqlite3.Connection:
    conn = tracestore.connect(path, create=True)
    conn.executescript(_CLEAN_SCHEMA)
    return conn


def clean(raw_db: str | Path, clean_db: str | Path) -> CleanResult:
    """Fold raw rows not seen yet into ``cleaned_sessions``; safe to rerun and to run while proxies write."""
    raw_key = str(Path(raw_db).resolve())
    raw = tracestore.connect(raw_db, create=False)
    out = connect_clean(clean_db)
    new_rows, touched = 0, set[str]()
    try:
        while True:
            out.execute("BEGIN IMMEDIATE")  # one cleaner at a time per clean db
            try:
                found = out.execute("SELECT last_rowid FROM cleaner_watermark WHERE raw_db = ?", (raw_key,)).fetchone()
                watermark = found[0] if found else 0
                batch: dict[str, list[RawTrace]] = defaultdict(list)
                rows = 0
                for row in tracestore.read_since(raw, watermark):
                    batch[row.session_id].append(row)
                    watermark, rows = row.rowid, rows + 1
                    if rows == _BATCH_ROWS:
                        break
                for session_id, session_rows in batch.items():
                    existing = out.execute(
                        "SELECT formatted_json FROM cleaned_sessions WHERE session_id = ?", (session_id,)
                    ).fetchone()
                    events = json.loads(existing[0])["traces"] if existing else []
                    session = build_session(session_id, events + [trace_event(row) for row in session_rows])
                    out.execute(
                        "INSERT OR REPLACE INTO cleaned_sessions(session_id, created_at, formatted_json) "
                        "VALUES (?, ?, ?)",
                        (session_id, session["created_at"], json.dumps(session, ensure_ascii=False)),
                    )
                out.execute(
                    "INSERT OR REPLACE INTO cleaner_watermark(raw_db, last_rowid) VALUES (?, ?)", (raw_key, watermark)
                )
                out.execute("COMMIT")
            except BaseException:
                out.execute("ROLLBACK")
                raise
            new_rows += rows
            touched.update(batch)
            if rows < _BATCH_ROWS:
                return CleanResult(new_rows, tuple(sorted(touched)))
    finally:
        raw.close()
        out.close()


def export_session(raw_db: str | Path, session_id: str) -> dict[str, Any]:
    """A session's cleaned record straight from the raw store (no clean db needed: what the harness calls)."""
    raw = tracestore.connect(raw_db, create=False)
    try:
        return build_session(
            session_id, [trace_event(row) for row in tracestore.read_since(raw, session_id=session_id)]
        )
    finally:
        raw.close()


def cleaned_session(clean_db: str | Path, session_id: str) -> dict[str, Any] | None:
    conn = connect_clean(clean_db)
    try:
        found = conn.execute(
            "SELECT formatted_json FROM cleaned_sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        return json.loads(found[0]) if found else None
    finally:
        conn.close()


def list_sessions(clean_db: str | Path) -> list[dict[str, Any]]:
    """Summaries (no traces) of every cleaned session, oldest first."""
    conn = connect_clean(clean_db)
    try:
        rows = conn.execute("SELECT formatted_json FROM cleaned_sessions ORDER BY created_at").fetchall()
    finally:
        conn.close()
    return [{key: value for key, value in json.loads(text).items() if key != "traces"} for (text,) in rows]


def to_cassette(session: Mapping[str, Any]) -> dict[str, Any]:
    """A replay cassette (``oneshot-cassette/1``, the harness's replay script) from an exported session.

    One turn per model answer, in order: completed answers keep their items and usage, HTTP
    errors and ``response.failed`` keep their failure; answers cut off mid-stream are left out
    (the client retried them).
    """
    turns: list[dict[str, Any]] = []
    for event in session.get("traces", []):
        output = event.get("output")
        if (
            event.get("method") != "POST"
            or not str(event.get("url", "")).split("?")[0].endswith("/responses")
            or not output
        ):
            continue
        status = event.get("status") or 0
        if status >= 400:
            turns.append({"http_error": {"status": status, "body": event.get("response") or {}}})
        elif output["status"] == "failed":
            error = output.get("error") or {}
            stream_error = {"code": error.get("code") or "server_error", "message": error.get("message") or ""}
            turns.append({"output": output["items"], "stream_error": stream_error})
        elif output["status"] is not None:
            turns.append({"output": output["items"], "usage": output.get("usage") or {}})
    models = session.get("models") or [""]
    return {"format": CASSETTE_FORMAT, "model": models[0], "turns": turns}
