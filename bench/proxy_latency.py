"""What the model path costs: added latency and time to first SSE byte through the token limiter (every
model request) and the tracing proxy (``--oneshot-trace``), and rows lost under load.

Run: ``ONESHOT_MITMDUMP=/path/to/mitmdump python bench/proxy_latency.py [--requests 10000]``.
Everything talks to the scripted Responses-API server on 127.0.0.1. Direct, limited and proxied
requests are interleaved so drift on a busy machine hits them alike. Targets: <= 5 ms p50 added,
TTFB <= 1.2x direct (with a model-like think time), 0 lost or misattributed rows.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from proxy import tracestore
from proxy.manage import start_proxy
from pytest_oneshot.model.cassette import Turn, message
from pytest_oneshot.model.limiter import TokenLimiter
from pytest_oneshot.model.scripted import ScriptedResponsesServer


def _request(base: str, key: str, body: Mapping[str, object], headers: dict[str, str]) -> tuple[float, float]:
    """(time to first SSE data byte, time to last byte) in seconds for one streamed response."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    started = time.perf_counter()
    path = f"{parts.path}/s/{key}/v1/responses"
    conn.request("POST", path, json.dumps(body), {"content-type": "application/json", **headers})
    response = conn.getresponse()
    first = None
    while line := response.readline():
        if first is None and line.startswith(b"data:"):
            first = time.perf_counter()
    ended = time.perf_counter()
    conn.close()
    if response.status != 200 or first is None:
        raise RuntimeError(f"unexpected answer {response.status} from {base}")
    return first - started, ended - started


def _quantiles(values: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(values, n=20)
    return statistics.median(values), cuts[18]


def latency(bases: Mapping[str, str], key: str, rounds: int) -> dict[str, tuple[float, float]]:
    """p50/p95 of TTFB and total per path, the paths taken in a rotating order each round."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in bases}
    body = {"model": "bench", "stream": True, "input": []}
    order = list(bases.items())
    for index in range(rounds):
        shift = index % len(order)
        for name, base in order[shift:] + order[:shift]:
            samples[name].append(_request(base, key, body, {"session-id": "latency"}))
    return {
        f"{name} {label}": _quantiles([pair[i] * 1000 for pair in pairs])
        for name, pairs in samples.items()
        for i, label in ((0, "ttfb"), (1, "total"))
    }


def load(proxy_url: str, db: Path, key: str, requests: int, sessions: int) -> tuple[int, int, int, float]:
    """(sent, lost, misattributed, requests/s) for ``requests`` spread over ``sessions`` threads."""
    per_session = requests // sessions
    errors: list[Exception] = []

    def client(session: int) -> None:
        try:
            for n in range(per_session):
                body = {"model": "bench", "stream": True, "input": [], "metadata": {"marker": f"{session}:{n}"}}
                _request(proxy_url, key, body, {"x-oneshot-session": f"bench-{session}"})
        except Exception as error:  # re-raised below, once every thread has finished
            errors.append(error)

    threads = [threading.Thread(target=client, args=(s,)) for s in range(sessions)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    conn = tracestore.connect(db, create=False)
    deadline = time.monotonic() + 30  # rows land just after each response: wait for stragglers
    while (
        conn.execute("SELECT count(*) FROM traces").fetchone()[0] < per_session * sessions
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    markers: Counter[str] = Counter()
    misattributed = 0
    for row in tracestore.read_since(conn):
        marker = row.request["metadata"]["marker"]
        markers[marker] += 1
        misattributed += row.session_id != f"bench-{marker.split(':')[0]}"
    conn.close()
    sent = per_session * sessions
    lost = sum(1 for s in range(sessions) for n in range(per_session) if markers[f"{s}:{n}"] != 1)
    return sent, lost, misattributed, sent / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="Requests in the load phase")
    parser.add_argument("--sessions", type=int, default=8, help="Concurrent sessions in the load phase")
    parser.add_argument("--rounds", type=int, default=300, help="Interleaved direct/proxy pairs per latency phase")
    parser.add_argument("--think-ms", type=float, default=50.0, help="Model-like delay before the stream starts")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, ScriptedResponsesServer() as server, TokenLimiter() as limiter:
        item = [message("ok " * 40)]
        server.add_script("fast", [Turn(output=item)])
        server.add_script("think", [Turn(output=item, latency_sec=args.think_ms / 1000)])
        started = time.perf_counter()
        proxy = start_proxy(
            server.root_url, Path(tmp) / "latency.sqlite3", session_id="bench", confdir=Path(tmp) / "conf"
        )
        startup_ms = (time.perf_counter() - started) * 1000
        bases = {"direct": server.root_url, "limiter": limiter.add_route(server.root_url).base_url, "proxy": proxy.url}
        try:
            fast = latency(bases, "fast", args.rounds)
            think = latency(bases, "think", max(args.rounds // 5, 20))
        finally:
            proxy.stop()
        proxy = start_proxy(server.root_url, Path(tmp) / "load.sqlite3", confdir=Path(tmp) / "conf")
        try:
            sent, lost, misattributed, rate = load(
                proxy.url, Path(tmp) / "load.sqlite3", "fast", args.requests, args.sessions
            )
        finally:
            proxy.stop()

    print(f"mitmdump start (until listening): {startup_ms:.0f} ms")
    for title, figures in (
        (f"no think time ({args.rounds} pairs)", fast),
        (f"{args.think_ms:.0f} ms think time", think),
    ):
        print(f"\n{title}:               p50 ms    p95 ms")
        for name, (p50, p95) in figures.items():
            print(f"  {name:<14}          {p50:8.2f}  {p95:8.2f}")
        for hop in ("limiter", "proxy"):
            added = [figures[f"{hop} total"][i] - figures["direct total"][i] for i in (0, 1)]
            ratio = figures[f"{hop} ttfb"][0] / figures["direct ttfb"][0]
            print(
                f"  {hop:<7} added latency p50 {added[0]:.2f} ms, p95 {added[1]:.2f} ms (target p50 <= 5 ms); "
                f"TTFB {hop}/direct {ratio:.2f}x (target <= 1.2x)"
            )
    print(
        f"\nload: {sent} requests from {args.sessions} concurrent sessions at {rate:.0f} req/s:"
        f" {lost} lost, {misattributed} misattributed rows (target 0)"
    )
    return 0 if lost == misattributed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
