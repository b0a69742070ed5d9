"""``oneshot traces list|show|export|clean``: read recorded sessions (every command cleans new rows first).

The cleaned database sits next to the raw one (``raw.sqlite3`` -> ``raw.clean.sqlite3``), so
traces recorded into a run directory stay self-contained.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from proxy.cleaner import clean, cleaned_session, list_sessions, to_cassette
from proxy.manage import ProxyError, default_raw_db


def _clean_db(args: argparse.Namespace) -> Path:
    if args.clean_db:
        return Path(args.clean_db)
    raw = Path(args.db)
    return raw.with_name(f"{raw.stem}.clean{raw.suffix}")


def _raw_db(args: argparse.Namespace) -> Path:
    if not Path(args.db).exists():
        raise ProxyError(f"{args.db}: no trace database here; record one with `oneshot proxy start` or pass --db")
    return Path(args.db)


def _refresh(args: argparse.Namespace) -> Path:
    clean(_raw_db(args), _clean_db(args))
    return _clean_db(args)


def _session(args: argparse.Namespace) -> dict[str, Any]:
    clean_db = _refresh(args)
    session = cleaned_session(clean_db, args.session)
    if session is None:
        known = [s["session_id"] for s in list_sessions(clean_db)]
        shown = ", ".join(known[-10:]) or "none"
        raise ProxyError(f"{args.db}: no session {args.session!r} (latest: {shown}); see `oneshot traces list`")
    return session


def _list(args: argparse.Namespace) -> int:
    sessions = list_sessions(_refresh(args))
    if args.json:
        json.dump(sessions, sys.stdout, indent=2)
        print()
        return 0
    print(f"{'SESSION':<40} {'REQS':>5} {'CREATED (UTC)':<20} {'IN/OUT TOKENS':>15}  MODELS")
    for s in sessions:
        tokens = f"{s['usage']['input_tokens']}/{s['usage']['output_tokens']}"
        created = (s["created_at"] or "")[:19].replace("T", " ")
        print(f"{s['session_id']:<40} {s['n_requests']:>5} {created:<20} {tokens:>15}  {','.join(s['models'])}")
    return 0


def _describe(trace: dict[str, Any]) -> str:
    output = trace.get("output")
    if not output:
        return trace.get("error") or ""
    parts = [f"{c.get('namespace', '') + '.' if c.get('namespace') else ''}{c['name']}()" for c in output["tool_calls"]]
    parts += [repr(m["text"][:60]) for m in output["messages"]]
    if output.get("error"):
        parts.append(f"error={output['error']}")
    return " ".join(parts) or str(output.get("status"))


def _show(args: argparse.Namespace) -> int:
    session = _session(args)
    print(
        f"session {session['session_id']}: {session['n_requests']} requests from {session['created_at']}, "
        f"models {session['models']}"
    )
    start = session["traces"][0]["ts_ms"] if session["traces"] else 0
    for trace in session["traces"]:
        offset = (trace["ts_ms"] - start) / 1000
        duration = trace.get("duration_ms")
        took = f"{duration:.0f}ms" if isinstance(duration, int | float) else "-"
        print(
            f"+{offset:8.3f}s {trace['method']:<6} {trace['url']}  "
            f"{trace['status'] or '---'} {took:>7}  {_describe(trace)}"
        )
    print(f"usage: {session['usage']}")
    return 0


def _export(args: argparse.Namespace) -> int:
    session = _session(args)
    document = to_cassette(session) if args.cassette else session
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _clean(args: argparse.Namespace) -> int:
    while True:
        if not args.watch or Path(args.db).exists():  # a watcher may start before the first proxy
            result = clean(_raw_db(args), _clean_db(args))
            if result.new_rows or not args.watch:
                print(
                    f"cleaned {result.new_rows} new rows into {len(result.sessions)} sessions ({_clean_db(args)})",
                    flush=True,
                )
        if not args.watch:
            return 0
        time.sleep(args.watch)


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser("traces", help="Recorded model traffic, per session")
    commands = group.add_subparsers(dest="traces_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=str(default_raw_db()), help="Raw trace database (default: %(default)s)")
    common.add_argument("--clean-db", help="Cleaned database (default: next to --db, *.clean.sqlite3)")

    listing = commands.add_parser("list", parents=[common], help="Sessions with request counts and token totals")
    listing.add_argument("--json", action="store_true", help="Machine-readable output")
    listing.set_defaults(func=_list)

    show = commands.add_parser("show", parents=[common], help="One line per request of a session")
    show.add_argument("session")
    show.set_defaults(func=_show)

    export = commands.add_parser("export", parents=[common], help="A session as JSON (oneshot-trace/1)")
    export.add_argument("session")
    export.add_argument("-o", "--output", help="Write here instead of stdout")
    export.add_argument(
        "--cassette", action="store_true", help="Write a replay cassette for the scripted server instead"
    )
    export.set_defaults(func=_export)

    cleaner = commands.add_parser("clean", parents=[common], help="Fold new raw rows into the cleaned database")
    cleaner.add_argument("--watch", type=float, metavar="SECONDS", help="Keep cleaning every SECONDS")
    cleaner.set_defaults(func=_clean)
