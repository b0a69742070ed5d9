"""``oneshot proxy install|start|stop|status``: a long-lived tracing proxy for interactive sessions.

Each started proxy is remembered in ``<state dir>/proxy/<name>.json`` (pid, port, db, log) so
``stop``/``status`` find it by pid, checked against its open log file, never by process name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from oneshot_shared.paths import state_dir
from proxy.manage import (
    ProxyError,
    ProxyHandle,
    default_raw_db,
    install_mitmproxy,
    managed_venv,
    start_proxy,
)


def _pid_file(name: str) -> Path:
    if not name or "/" in name:
        raise ProxyError(f"--name {name!r}: must be non-empty without '/'")
    return state_dir() / "proxy" / f"{name}.json"


def _load(name: str) -> ProxyHandle | None:
    path = _pid_file(name)
    if not path.exists():
        return None
    return ProxyHandle.from_json(json.loads(path.read_text()))


def _instructions(handle: ProxyHandle) -> str:
    if handle.upstream:
        return (
            f"Reverse proxy to {handle.upstream}: point the agent's base_url at {handle.url}/v1\n"
            f'  (codex: [model_providers.<name>] base_url = "{handle.url}/v1")'
        )
    return (
        "Forward proxy: in the shell that runs the agent,\n"
        f"  export HTTPS_PROXY={handle.url} HTTP_PROXY={handle.url}\n"
        f"  export CODEX_CA_CERTIFICATE={handle.ca_cert} SSL_CERT_FILE={handle.ca_cert}\n"
        "  (the CA is this proxy's own, in its confdir; unset NO_PROXY if it lists the API host)"
    )


def _install(args: argparse.Namespace) -> int:
    print(install_mitmproxy(Path(args.venv) if args.venv else None))
    return 0


def _start(args: argparse.Namespace) -> int:
    if (old := _load(args.name)) is not None and old.alive():
        raise ProxyError(
            f"proxy {args.name!r} is already running at {old.url} (pid {old.pid}); "
            f"run `oneshot proxy stop --name {args.name}` first"
        )
    logs = state_dir() / "proxy" / "logs"
    handle = start_proxy(
        None if args.forward else args.upstream,
        Path(args.db) if args.db else default_raw_db(),
        session_id=args.session,
        port=args.port,
        host=args.host,
        log_path=logs / f"{args.name}.log",
        allow_remote=args.allow_remote,
        detach=True,
    )
    _pid_file(args.name).write_text(json.dumps(handle.to_json(), indent=2))
    print(f"proxy {args.name!r} listening at {handle.url} (pid {handle.pid})")
    print(f"  traces: {handle.db_path}\n  log:    {handle.log_path}")
    print(_instructions(handle))
    return 0


def _stop(args: argparse.Namespace) -> int:
    handle = _load(args.name)
    if handle is None:
        print(f"proxy {args.name!r} is not running")
        return 0
    handle.stop()
    _pid_file(args.name).unlink(missing_ok=True)
    print(f"proxy {args.name!r} (pid {handle.pid}) stopped")
    return 0


def _status(args: argparse.Namespace) -> int:
    names = [args.name] if args.name else sorted(p.stem for p in (state_dir() / "proxy").glob("*.json"))
    report: list[dict[str, Any]] = []
    for name in names:
        handle = _load(name)
        if handle is None:
            report.append({"name": name, "running": False})
            continue
        health = handle.health() if handle.alive() else None
        report.append({"name": name, "running": health is not None, "health": health, **handle.to_json()})
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    elif not report:
        print(f"no proxies started (state dir {state_dir()})")
    for entry in report if not args.json else []:
        state = (
            f"running at {entry['url']} (pid {entry['pid']}, {entry['health']['recorded']} recorded)"
            if entry["running"]
            else "not running"
        )
        print(f"{entry['name']}: {state}")
    return 0 if all(entry["running"] for entry in report) else 1


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser("proxy", help="Tracing proxy (mitmproxy) for recording agent sessions")
    commands = group.add_subparsers(dest="proxy_command", required=True, metavar="ACTION")

    install = commands.add_parser("install", help=f"Create the managed mitmproxy venv ({managed_venv()})")
    install.add_argument("--venv", help="Create it here instead")
    install.set_defaults(func=_install)

    start = commands.add_parser("start", help="Start a proxy in the background")
    target = start.add_mutually_exclusive_group(required=True)
    target.add_argument("--upstream", help="Reverse-proxy to this model server (http://127.0.0.1:PORT)")
    target.add_argument(
        "--forward", action="store_true", help="Forward proxy for HTTPS_PROXY (prints how to trust its CA)"
    )
    start.add_argument("--port", type=int, default=0, help="Listening port (default: a free one)")
    start.add_argument("--host", default="127.0.0.1", help="Listening address (default: 127.0.0.1)")
    start.add_argument("--db", help=f"Raw trace database (default: {default_raw_db()})")
    start.add_argument("--session", help="Session id for requests without an x-oneshot-session header")
    start.add_argument(
        "--allow-remote", action="store_true", help="Allow non-loopback servers (needed to reach a real API)"
    )
    start.add_argument("--name", default="default", help="Name to refer to it by (default: %(default)s)")
    start.set_defaults(func=_start)

    stop = commands.add_parser("stop", help="Stop a proxy started with `start`")
    stop.add_argument("--name", default="default", help="Proxy name (default: %(default)s)")
    stop.set_defaults(func=_stop)

    status = commands.add_parser("status", help="Show started proxies; exit 1 if one is down")
    status.add_argument("--name", help="Only this proxy")
    status.add_argument("--json", action="store_true", help="Machine-readable output")
    status.set_defaults(func=_status)
