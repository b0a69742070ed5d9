"""``oneshot mcp | capture | prepare | setup codex``: the capture commands (via ``pytest_oneshot.commands``).

``oneshot capture -- codex ARGS...`` runs a human's codex session with the capture server (and, when
mitmdump is installed, the tracing proxy) configured for this repository only, in a per-session
CODEX_HOME layered over the user's; when the session created a task, its whole trace is exported
into the task's ``trace/`` after codex exits (end_task itself can only see the requests before it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from mcp_server import codex_config, state
from mcp_server.capture import tasks_root
from mcp_server.created import write_trace
from mcp_server.gitrepo import GitRepo
from oneshot_shared.errors import OneshotError
from proxy.cleaner import export_session
from proxy.manage import ProxyError, ProxyHandle, default_raw_db, find_mitmdump, start_proxy

_PASSED_ON = ("ONESHOT_CAPTURE_PYTHON", "ONESHOT_SENSITIVITY", "ONESHOT_GITHUB_API", "PRIVATE_GITHUB_PAT", "GH_PAT")
"""Variables the server reads that codex's environment whitelist would drop."""


def _mcp(args: argparse.Namespace) -> int:
    try:
        from mcp_server.server import main  # the SDK loads only for this command
    except ModuleNotFoundError as exc:
        raise OneshotError(
            f"the capture server needs the mcp SDK ({exc}): pip install 'pytest-oneshot[capture]'"
        ) from None
    main()
    return 0


def _server_env(repo: Path, session_id: str, trace_db: Path | None) -> dict[str, str]:
    env = {"ONESHOT_REPO": str(repo), "ONESHOT_TASKS_DIR": str(tasks_root()), "ONESHOT_TRACE_SESSION": session_id}
    if trace_db is not None:
        env["ONESHOT_TRACE_DB"] = str(trace_db)
    return {**env, **{name: os.environ[name] for name in _PASSED_ON if os.environ.get(name)}}


def _start_tracing(args: argparse.Namespace, config: dict[str, Any], session_id: str) -> ProxyHandle | None:
    if args.trace == "off":
        return None
    try:
        find_mitmdump()
    except ProxyError as exc:
        if args.trace == "on":
            raise
        print(f"oneshot capture: no trace ({exc})", file=sys.stderr)
        return None
    root, _ = codex_config.split_upstream(codex_config.upstream_of(config))
    db = Path(args.trace_db) if args.trace_db else default_raw_db()
    return start_proxy(root, db, session_id=session_id, allow_remote=True)


def _export_trace(repo: GitRepo, session_id: str, proxy: ProxyHandle) -> Path | None:
    """Rewrite the created task's trace with the whole session, now that codex has exited."""
    current = state.load(repo)
    if not current or current.get("status") != "ended" or current.get("trace_session") != session_id:
        return None
    task_dir = Path(current["result"]["task_dir"])
    write_trace(task_dir / "trace", session_id, export_session(proxy.db_path, session_id))
    return task_dir


def _capture(args: argparse.Namespace) -> int:
    command = [word for word in args.command if word != "--"] or ["codex"]
    repo = GitRepo.discover(Path.cwd())
    session_id = f"capture-{uuid.uuid4().hex[:12]}"
    user_home = codex_config.user_codex_home()
    config = codex_config.read_config(user_home)
    proxy = _start_tracing(args, config, session_id)
    overrides: dict[str, Any] = {}
    if proxy is not None:
        overrides["model_provider"] = codex_config.TRACED_PROVIDER
        provider = codex_config.traced_provider(config, proxy.url, session_id)
        overrides["model_providers"] = {codex_config.TRACED_PROVIDER: provider}
    env = _server_env(Path.cwd(), session_id, proxy.db_path if proxy else None)
    overrides["mcp_servers"] = {codex_config.SERVER_NAME: codex_config.mcp_server_table(env)}
    home = Path(tempfile.mkdtemp(prefix="oneshot-codex-home-"))
    try:
        codex_config.layered_home(home, user_home, overrides)
        print(
            f"oneshot capture: {' '.join(command[:1])} with the capture server for {repo.toplevel}; "
            f"tasks go to {tasks_root()}; trace session {session_id if proxy else '(none)'}",
            file=sys.stderr,
        )
        try:
            returncode = subprocess.run(command, env={**os.environ, "CODEX_HOME": str(home)}).returncode
        except FileNotFoundError:
            raise OneshotError(f"{command[0]}: command not found") from None
        if proxy is not None and (task_dir := _export_trace(repo, session_id, proxy)):
            print(f"oneshot capture: trace of session {session_id} written to {task_dir / 'trace'}", file=sys.stderr)
    finally:
        if proxy is not None:
            proxy.stop()
        shutil.rmtree(home, ignore_errors=True)  # links to the user's files are removed, never followed
    return returncode


def _prepare(args: argparse.Namespace) -> int:
    from mcp_server.prepare import prepare

    dest = prepare(Path(args.created), Path(args.out), Path(args.repo) if args.repo else None)
    print(dest)
    return 0


def _setup_codex(args: argparse.Namespace) -> int:
    """Add ``[mcp_servers.oneshot]`` to a codex home's config (a copy of the old file is kept)."""
    home = Path(args.codex_home) if args.codex_home else codex_config.user_codex_home()
    path = home / "config.toml"
    config = codex_config.read_config(home)
    env = {"ONESHOT_TASKS_DIR": str(tasks_root())}
    overrides: dict[str, Any] = {"mcp_servers": {codex_config.SERVER_NAME: codex_config.mcp_server_table(env)}}
    if args.trace_proxy:
        session = args.trace_session or "codex"
        provider = codex_config.traced_provider(config, args.trace_proxy.rstrip("/"), session)
        overrides |= {"model_provider": codex_config.TRACED_PROVIDER}
        overrides["model_providers"] = {codex_config.TRACED_PROVIDER: provider}
    home.mkdir(parents=True, exist_ok=True)
    kept = path.is_file()
    if kept:
        shutil.copyfile(path, path.with_name("config.toml.bak"))
    path.write_text(codex_config.dumps(codex_config.merge(config, overrides)), encoding="utf-8")
    print(f"wrote [mcp_servers.oneshot] to {path}" + (" (previous file: config.toml.bak)" if kept else ""))
    return 0


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mcp = subparsers.add_parser("mcp", help="Run the capture MCP server on stdio (what codex starts)")
    mcp.set_defaults(func=_mcp)

    capture = subparsers.add_parser(
        "capture", aliases=["codex"], help="Run a codex session with the capture server for this repository"
    )
    trace_help = "Record the session with the tracing proxy (auto: when mitmdump is installed)"
    capture.add_argument("--trace", choices=["auto", "on", "off"], default="auto", help=trace_help)
    capture.add_argument("--trace-db", help="Raw trace store (default: the proxy's, under the state dir)")
    capture.add_argument("command", nargs=argparse.REMAINDER, help="-- codex ARGS... (default: codex)")
    capture.set_defaults(func=_capture)

    prepare = subparsers.add_parser("prepare", help="Turn a created task into a prepared task the plugin runs")
    prepare.add_argument("created", help="A created task directory (from repo_end_task_v1, or OneShot's)")
    prepare.add_argument("--out", default="tasks", help="Where DIR/<slug>/ is written (default: tasks)")
    prepare.add_argument("--repo", help="A local clone holding the start commit, for tasks without a bundle")
    prepare.set_defaults(func=_prepare)

    setup = subparsers.add_parser("setup", help="Configure an agent to use the capture server")
    setup_commands = setup.add_subparsers(dest="agent", required=True, metavar="AGENT")
    codex = setup_commands.add_parser("codex", help="Write [mcp_servers.oneshot] into codex's config.toml")
    codex.add_argument("--codex-home", help="Codex home (default: $CODEX_HOME or ~/.codex)")
    codex.add_argument("--trace-proxy", help="Also route the model through this tracing proxy URL (reverse mode)")
    codex.add_argument("--trace-session", help="Session name the proxy files requests under (default: codex)")
    codex.set_defaults(func=_setup_codex)
