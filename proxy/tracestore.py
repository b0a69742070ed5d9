"""The raw trace store: OneShot's ``traces`` table in SQLite WAL mode, shared by many writers.

Stdlib only (the mitmproxy addon loads it inside mitmdump's venv). Every proxy process appends
one row per HTTP transaction; readers (the cleaner, ``oneshot traces``) never block writers.
Rows are only ever inserted, never updated or deleted, so ``rowid`` order is commit order and a
reader can resume from the last rowid it saw.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS traces(
    id TEXT PRIMARY KEY, ts_ms INTEGER, method TEXT, url TEXT,
    request_json TEXT, response_json TEXT, meta_json TEXT);
CREATE INDEX IF NOT EXISTS traces_session ON traces(json_extract(meta_json, '$.session_id'), ts_ms);
"""
BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class RawTrace:
    """One recorded HTTP transaction, JSON columns decoded."""

    rowid: int
    id: str
    ts_ms: int
    method: str
    url: str
    request: Any
    response: Any
    meta: dict[str, Any]

    @property
    def session_id(self) -> str:
        return str(self.meta.get("session_id") or "session_unknown")


def connect(path: str | Path, *, create: bool = True) -> sqlite3.Connection:
    """Open a store in WAL mode (autocommit, long busy timeout so concurrent writers queue, not fail)."""
    if create:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    elif not Path(path).exists():
        raise FileNotFoundError(f"{path}: no trace database here")
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives a killed process (only an OS crash can lose the last commits).
    conn.execute("PRAGMA synchronous=NORMAL")
    if create:
        conn.executescript(_SCHEMA)
    return conn


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def insert(
    conn: sqlite3.Connection,
    *,
    id: str,
    ts_ms: int,
    method: str,
    url: str,
    request: Any,
    response: Any,
    meta: dict[str, Any],
) -> bool:
    """Append one transaction; returns False if ``id`` was already recorded (exactly once per flow)."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO traces(id, ts_ms, method, url, request_json, response_json, meta_json)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (id, ts_ms, method, url, _dumps(request), _dumps(response), _dumps(meta)),
    )
    return cursor.rowcount == 1


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"_raw": text}


def count(conn: sqlite3.Connection, session_id: str) -> int:
    """Rows recorded so far for ``session_id`` (served by the session index)."""
    query = "SELECT count(*) FROM traces WHERE json_extract(meta_json, '$.session_id') = ?"
    return int(conn.execute(query, (session_id,)).fetchone()[0])


def read_since(conn: sqlite3.Connection, after_rowid: int = 0, *, session_id: str | None = None) -> Iterator[RawTrace]:
    """Rows committed after ``after_rowid`` in commit order, optionally for one session."""
    query = "SELECT rowid, id, ts_ms, method, url, request_json, response_json, meta_json FROM traces WHERE rowid > ?"
    params: tuple[Any, ...] = (after_rowid,)
    if session_id is not None:
        query += " AND json_extract(meta_json, '$.session_id') = ?"
        params += (session_id,)
    for rowid, id_, ts_ms, method, url, request, response, meta in conn.execute(query + " ORDER BY rowid", params):
        decoded_meta = _loads(meta)
        yield RawTrace(
            rowid=rowid,
            id=id_,
            ts_ms=int(ts_ms or 0),
            method=method or "",
            url=url or "",
            request=_loads(request),
            response=_loads(response),
            meta=decoded_meta if isinstance(decoded_meta, dict) else {},
        )
