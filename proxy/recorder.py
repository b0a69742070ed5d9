"""The harness's trace recorder (``--oneshot-trace``): mitmdump in reverse mode in front of its model gateway.

``pytest_oneshot`` finds :class:`MitmRecorder` through the ``pytest_oneshot.recorders`` entry point and
drives it through its ``TraceRecorder`` protocol, so neither package imports the other. One recorder
serves a whole process; each trial's requests carry its session id, and :meth:`MitmRecorder.export`
returns that session once every request has been committed to the raw store.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Final

from proxy import tracestore
from proxy.cleaner import export_session
from proxy.manage import ProxyHandle, find_mitmdump, start_proxy

POLL_SEC: Final = 0.02


class MitmRecorder:
    """Records into ``trace_db``, mitmdump's log in ``log_dir``.

    Raises:
        ProxyError: mitmdump is not installed (the message says how to install it).
    """

    def __init__(self, trace_db: Path, log_dir: Path) -> None:
        self._mitmdump = find_mitmdump()
        self._trace_db = trace_db
        self._log_dir = log_dir
        self._proxy: ProxyHandle | None = None

    def start(self, upstream: str) -> str:
        log_path = self._log_dir / f"mitmdump-{os.getpid()}.log"
        self._proxy = start_proxy(upstream, self._trace_db, mitmdump=self._mitmdump, log_path=log_path)
        return self._proxy.url

    def export(self, session_id: str, requests: int, wait_sec: float) -> tuple[dict[str, Any], bool]:
        deadline = time.monotonic() + wait_sec
        conn = tracestore.connect(self._trace_db, create=False)
        try:
            while (recorded := tracestore.count(conn, session_id)) < requests and time.monotonic() < deadline:
                time.sleep(POLL_SEC)
        finally:
            conn.close()
        return export_session(self._trace_db, session_id), recorded >= requests

    def stop(self) -> None:
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
