"""``--oneshot-resume``: a run killed (SIGKILL, a crash) or stopped (Ctrl-C) restarts where it stopped.

The agent is a ``command`` agent that calls a counter server on loopback each time it runs, so the
test counts the agent's invocations: a finished trial must never run again, every item must appear
once in the final report, and the interrupted attempt's files must still be there.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pytest_oneshot.task import load_task
from tests.conftest import ParsedRun
from tests.polling import as_from_a_terminal, wait_for

ITEMS = [f"{task}[command-r{rollout}]" for task in ("fix-add", "fix-sum") for rollout in range(3)]


class AgentCounter:
    """A loopback server the agent's command calls once per invocation: it counts them and answers
    ``fix`` or ``keep`` in turn (so items pass and fail); calls after the first ``answered`` wait
    until :meth:`release`."""

    def __init__(self, answered: int) -> None:
        self.calls = 0
        self.held = 0
        self._answered = answered
        self._released = threading.Event()
        self._lock = threading.Lock()
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with counter._lock:
                    counter.calls += 1
                    number = counter.calls
                    hold = number > counter._answered and not counter._released.is_set()
                    counter.held += hold
                if hold:
                    counter._released.wait()
                body = b"fix" if number % 2 else b"keep"
                with contextlib.suppress(OSError):  # a held agent the run stopped is gone
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        self._released.set()

    def agent_cmd(self) -> str:
        fetch = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=600).read().decode())"
        url = f"http://127.0.0.1:{self.server.server_port}/"
        fix = 'sed -i "s/a - b/a + b/" calc/__init__.py'
        return f"""a=$(python3 -c '{fetch}' {url}); echo "answer $a"; [ "$a" != fix ] || {fix}"""


@pytest.fixture
def counter() -> Iterator[AgentCounter]:
    server = AgentCounter(answered=2)
    yield server
    server.release()
    server.server.shutdown()


@pytest.fixture
def tasks(make_task: Callable[..., Path], pytester: pytest.Pytester) -> Path:
    """Two tasks whose agent may reach the counter on loopback, and waits for it as long as it takes (an
    agent timeout would end a waiting trial, which then counts as finished)."""
    for name in ("fix-add", "fix-sum"):
        make_task(
            pytester.path / "tasks" / name, environment={"network": "loopback"}, limits={"agent_timeout_sec": 3600}
        )
    return pytester.path / "tasks"


def _args(counter: AgentCounter, *extra: str) -> list[str]:
    return ["tasks", "--oneshot-agent=command", f"--oneshot-agent-cmd={counter.agent_cmd()}", *extra]


def _finished(run_dir: Path) -> dict[str, bytes]:
    """Item dir name -> its final results file, for every item the run finished."""
    return {
        marker.parent.name: (marker.parent / "evaluation_results.json").read_bytes()
        for marker in run_dir.glob("*/finished.json")
    }


@pytest.mark.parametrize(
    ("stop", "workers"),
    [(signal.SIGKILL, 0), (signal.SIGINT, 0), (signal.SIGKILL, 2), (signal.SIGINT, 2)],
    ids=["kill-9", "ctrl-c", "kill-9-xdist", "ctrl-c-xdist"],
)
def test_a_stopped_run_resumes_where_it_stopped(
    stop: signal.Signals,
    workers: int,
    tasks: Path,
    counter: AgentCounter,
    pytester: pytest.Pytester,
    run_and_parse: Callable[..., ParsedRun],
) -> None:
    """Two trials finish, the next agents wait for the counter, and the whole process group gets the
    signal (as from a crash or a terminal's Ctrl-C; sandboxed commands have sessions of their own)."""
    xdist = ["-n", str(workers)] if workers else ["-p", "no:xdist"]
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *_args(counter, "--oneshot-rollouts=3", *xdist)]
    run = pytester.popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
    )
    in_flight = workers or 1  # agents running at once: one per pytest process (--oneshot-concurrency 1)
    runs = pytester.path / "runs"
    try:
        wait_for(
            lambda: counter.held == in_flight and sum(len(_finished(path)) for path in runs.glob("*")) == 2,
            "two finished trials and the next agents waiting",
            bound_sec=600,  # a loaded machine starts the second xdist worker late
        )
        os.killpg(run.pid, stop)
        assert run.wait(timeout=120) == (-stop if stop == signal.SIGKILL else pytest.ExitCode.INTERRUPTED)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    (run_dir,) = runs.iterdir()
    finished = _finished(run_dir)
    outcomes = {name: (json.loads(data)["outcome"], json.loads(data)["reason"]) for name, data in finished.items()}
    assert len(finished) == 2, outcomes  # a third is a trial that failed before it reached the counter
    calls_before = counter.calls
    counter.release()

    resumed = run_and_parse(*_args(counter, "--oneshot-rollouts=3", f"--oneshot-resume={run_dir}", *xdist))
    items = resumed.report["items"]
    assert sorted(item["item_id"] for item in items) == sorted(ITEMS), "every item exactly once"
    assert counter.calls - calls_before == len(ITEMS) - len(finished), "the agent ran for the unfinished items only"
    assert resumed.report["run_id"] == run_dir.name
    by_dir = {Path(item["run_dir"]).name: item for item in items}
    for name, results in finished.items():
        assert by_dir[name].get("resumed") is True
        assert by_dir[name]["outcome"] == json.loads(results)["outcome"]
        assert (run_dir / name / "evaluation_results.json").read_bytes() == results, "a finished trial is untouched"
    assert {item["outcome"] for item in items} == {"passed", "failed"}
    resumed.result.assert_outcomes(
        passed=sum(item["outcome"] == "passed" for item in items),
        failed=sum(item["outcome"] == "failed" for item in items),
    )
    aside = sorted(run_dir.glob("*.prev-1"))
    assert all(not (path / "finished.json").exists() for path in aside)
    assert all(path.name.removesuffix(".prev-1") in by_dir for path in aside)
    stopped = [path for path in aside if (path / "agent" / "agent.log").is_file()]
    assert len(stopped) == in_flight, "the stopped attempts' files are kept beside the new ones"


def test_a_changed_task_runs_again_and_the_report_keeps_items_not_collected(
    tasks: Path, counter: AgentCounter, pytester: pytest.Pytester, run_and_parse: Callable[..., ParsedRun]
) -> None:
    counter.release()
    first = run_and_parse(*_args(counter))
    run_dir = Path(first.report["items"][0]["run_dir"]).parent
    meta = tasks / "fix-sum" / "tb_meta.json"
    meta.write_text(meta.read_text().replace("fix it.", "fix it, please."))
    calls = counter.calls

    result = pytester.runpytest_subprocess("tasks/fix-sum", *_args(counter)[1:], f"--oneshot-resume={run_dir}")
    result.assert_outcomes(passed=1)  # the counter's third answer: "fix"
    result.stdout.fnmatch_lines(["resumed: 1 of 2 items finished earlier, not rerun"])
    assert counter.calls - calls == 1
    items = {item["item_id"]: item for item in json.loads((run_dir / "report.json").read_text())["items"]}
    assert sorted(items) == ["fix-add[command-r0]", "fix-sum[command-r0]"]
    assert items["fix-add[command-r0]"]["resumed"] is True, "finished, not collected now, still reported"
    assert "resumed" not in items["fix-sum[command-r0]"]
    assert (run_dir / "fix-sum__command-r0.prev-1" / "finished.json").is_file(), "the outdated trial is kept"


def test_resume_needs_a_run_directory(pytester: pytest.Pytester) -> None:
    (pytester.path / "empty").mkdir()
    for where, problem in (("nowhere", "no such run directory"), ("empty", "not a run directory")):
        result = pytester.runpytest(f"--oneshot-resume={where}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*--oneshot-resume: *{where}: {problem}*"])


def test_the_task_digest_covers_every_file_of_the_task_but_bytecode(
    make_task: Callable[..., Path], tmp_path: Path
) -> None:
    task_dir = make_task(tmp_path / "tasks" / "fix-add")
    digest = load_task(task_dir).content_digest
    (task_dir / "tests" / "__pycache__").mkdir()
    (task_dir / "tests" / "__pycache__" / "test_calc.cpython-311.pyc").write_bytes(b"\0")
    assert load_task(task_dir).content_digest == digest
    (task_dir / "cassettes").mkdir()
    (task_dir / "cassettes" / "replay.json").write_text("{}")
    assert load_task(task_dir).content_digest != digest, "a cassette changes what the agent does"
