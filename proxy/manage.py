"""Run the tracing proxy: find or install mitmdump, start/stop it, and the ``oneshot proxy`` commands.

mitmproxy pins h11 against the mcp SDK, so mitmdump runs from its own venv: ``$ONESHOT_MITMDUMP``,
else ``mitmdump`` on PATH, else the managed venv that ``oneshot proxy install`` creates. Every proxy
gets its own ``confdir`` (never ``~/.mitmproxy``), log file and, for the CLI, a pid file under the
state dir; processes are stopped by the pid they were started with, never by name.

The harness starts one per process through :mod:`proxy.recorder`; by hand::

    handle = start_proxy("http://127.0.0.1:8000", run_dir / "raw_traces.sqlite3", session_id=trial_id)
    ...  # point codex at f"{handle.url}/v1"
    handle.stop()
"""

from __future__ import annotations

import dataclasses
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from oneshot_shared.errors import OneshotError
from oneshot_shared.paths import cache_dir, state_dir

MITMPROXY_VERSION = "11.0.2"
ADDON_PATH = Path(__file__).with_name("addon.py")
HEALTH_PATH = "/__oneshot/health"
_INSTALL_HINT = (
    "run `oneshot proxy install` (creates a venv with mitmproxy=={v}) or set ONESHOT_MITMDUMP=/path/to/mitmdump"
)


class ProxyError(OneshotError):
    """The tracing proxy could not be found, started or stopped."""


def managed_venv() -> Path:
    """The venv ``oneshot proxy install`` creates (in the cache dir)."""
    return cache_dir() / f"mitmproxy-{MITMPROXY_VERSION}-venv"


def default_raw_db() -> Path:
    return state_dir() / "traces" / "raw.sqlite3"


def default_clean_db() -> Path:
    return state_dir() / "traces" / "clean.sqlite3"


def find_mitmdump() -> Path:
    """``$ONESHOT_MITMDUMP``, else PATH, else the managed venv; raises with the install command."""
    if env := os.environ.get("ONESHOT_MITMDUMP"):
        if not os.access(env, os.X_OK):
            raise ProxyError(
                f"ONESHOT_MITMDUMP={env}: not an executable file; {_INSTALL_HINT.format(v=MITMPROXY_VERSION)}"
            )
        return Path(env)
    if found := shutil.which("mitmdump"):
        return Path(found)
    managed = managed_venv() / "bin" / "mitmdump"
    if managed.exists():
        return managed
    raise ProxyError(f"mitmdump not found; {_INSTALL_HINT.format(v=MITMPROXY_VERSION)}")


def install_mitmproxy(venv: Path | None = None, *, python: str | None = None) -> Path:
    """Create a venv holding mitmproxy (kept apart from the project's deps); return its mitmdump."""
    venv = venv or managed_venv()
    mitmdump = venv / "bin" / "mitmdump"
    if mitmdump.exists():
        return mitmdump
    interpreter = python or shutil.which("python3") or sys.executable
    steps = [
        [interpreter, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "-q", f"mitmproxy=={MITMPROXY_VERSION}"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ProxyError(f"installing mitmproxy into {venv} failed: {' '.join(step[:3])}: {tail[0]}")
    return mitmdump


def _check_upstream(upstream: str, allow_remote: bool) -> str:
    parsed = urllib.parse.urlsplit(upstream)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ProxyError(f"upstream {upstream!r}: expected http(s)://HOST:PORT")
    host = parsed.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise ProxyError(f"upstream {upstream}: {host} is not loopback; pass --allow-remote to trace a remote server")
    return upstream.rstrip("/")


def _check_port_free(host: str, port: int) -> None:
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise ProxyError(
                f"proxy: port {port} on {host} is already in use; choose another --port (0 picks a free one)"
            ) from None


@dataclass
class ProxyHandle:
    """A running mitmdump: where to send traffic, where it records, and how to stop it."""

    url: str
    port: int
    pid: int
    mode: str
    db_path: Path
    session_id: str | None
    log_path: Path
    confdir: Path
    upstream: str | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def ca_cert(self) -> Path:
        """The CA a forward-mode client must trust (created by mitmproxy on first start)."""
        return self.confdir / "mitmproxy-ca-cert.pem"

    def health(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """The addon's health answer, or None if the proxy does not answer."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://127.0.0.1:{self.port}{HEALTH_PATH}", timeout=timeout) as reply:
                return dict(json.loads(reply.read()))
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return _same_process(self.pid, self.log_path)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the addon records flows still open), then SIGKILL after ``timeout``. Idempotent."""
        if not self.alive():
            self._reap()
            return
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait()

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}
        return {key: str(value) if isinstance(value, Path) else value for key, value in data.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProxyHandle:
        paths = {"db_path", "log_path", "confdir"}
        fields: dict[str, Any] = {key: Path(value) if key in paths else value for key, value in data.items()}
        return cls(**fields)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _same_process(pid: int, log_path: Path) -> bool:
    """True if ``pid`` is still the mitmdump we started (its open log file proves it, not its name)."""
    try:
        fds = Path(f"/proc/{pid}/fd")
        return any(os.readlink(fd) == str(log_path) for fd in fds.iterdir())
    except OSError:
        return False


def start_proxy(
    upstream: str | None,
    db_path: str | Path,
    session_id: str | None = None,
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    confdir: str | Path | None = None,
    log_path: str | Path | None = None,
    allow_remote: bool = False,
    detach: bool = False,
    mitmdump: str | Path | None = None,
    mitm_options: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> ProxyHandle:
    """Start mitmdump recording into ``db_path`` and wait until it listens.

    Args:
        upstream: ``http://127.0.0.1:PORT`` for reverse mode (what the harness uses), or None for
            a forward proxy (``HTTPS_PROXY``; clients must trust :attr:`ProxyHandle.ca_cert`).
        db_path: the raw trace store (created if missing); many proxies may share one.
        session_id: label for requests without an ``x-oneshot-session`` header.
        port: listening port; 0 picks a free one.
        detach: keep running after this process exits (the CLI); otherwise stopped at exit.
        mitm_options: extra mitmproxy ``--set`` options (e.g. ``ssl_verify_upstream_trusted_ca``).
    Raises:
        ProxyError: mitmdump missing, port in use, non-loopback upstream without
            ``allow_remote``, or mitmdump exited before listening (with the log's last line).
    """
    executable = Path(mitmdump) if mitmdump else find_mitmdump()
    mode = f"reverse:{_check_upstream(upstream, allow_remote)}" if upstream else "regular"
    _check_port_free(host, port)
    db_path = Path(db_path).resolve()
    confdir = Path(confdir or state_dir() / "proxy" / "confdir").resolve()
    log_path = Path(
        log_path or state_dir() / "proxy" / "logs" / f"mitmdump-{os.getpid()}-{time.time_ns()}.log"
    ).resolve()
    ready_file = log_path.with_name(log_path.name + ".ready")
    for directory in (confdir, log_path.parent, db_path.parent):
        directory.mkdir(parents=True, exist_ok=True)
    options = {
        "confdir": confdir,
        "oneshot_db": db_path,
        "oneshot_session": session_id or "",
        "oneshot_ready_file": ready_file,
        "oneshot_allow_remote": str(allow_remote).lower(),
        "flow_detail": 0,  # mitmdump's own flow lines would print URLs unredacted
        "connection_strategy": "lazy",  # never dial a server before the addon has seen the request
        "termlog_verbosity": "warn",  # errors only: per-connection lines would grow the log without bound
        **(mitm_options or {}),
    }
    argv = [str(executable), "--mode", mode, "--listen-host", host, "-p", str(port), "-s", str(ADDON_PATH)]
    for name, value in options.items():
        argv += ["--set", f"{name}={value}"]
    ready_file.unlink(missing_ok=True)
    # The first mitmdump to use a confdir creates its CA; concurrent first starts must not race.
    with open(confdir / ".start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        info = _wait_ready(process, ready_file, log_path, timeout)
    ready_file.unlink(missing_ok=True)
    listen_host = f"[{host}]" if ":" in host else host
    handle = ProxyHandle(
        url=f"http://{listen_host}:{info['port']}",
        port=int(info["port"]),
        pid=process.pid,
        mode=mode,
        db_path=db_path,
        session_id=session_id,
        log_path=log_path,
        confdir=confdir,
        upstream=upstream,
        _process=None if detach else process,
    )
    if not detach:
        weakref.finalize(handle, _terminate, process)  # also runs at interpreter exit
    return handle


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_ready(process: subprocess.Popen[bytes], ready_file: Path, log_path: Path, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready_file.exists():
            return dict(json.loads(ready_file.read_text()))
        if process.poll() is not None:
            raise ProxyError(
                f"mitmdump exited with {process.returncode} before listening: {_last_error(log_path)} (log: {log_path})"
            )
        time.sleep(0.02)
    _terminate(process)
    raise ProxyError(f"mitmdump did not start listening within {timeout:.0f}s (log: {log_path})")


def _last_error(log_path: Path) -> str:
    """The log's last meaningful line (mitmdump ends every failed start with the same generic one)."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith("Error logged during startup")]
    return (meaningful or lines or ["no output"])[-1]
