"""``--oneshot-trace`` end to end: the real codex, through the real mitmdump, on copies of the shipped tasks.

The chain under test is codex -> mitmdump (records) -> token limiter (adds the key, counts,
enforces the limit) -> scripted model. Model turns come from the tasks' cassettes: served by
``--oneshot-model=replay``, or by a scripted server in this process standing in for the API.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.cleaner import to_cassette
from pytest_oneshot.model.cassette import Cassette, load_cassette
from pytest_oneshot.model.scripted import ScriptedResponsesServer
from pytest_oneshot.pricing import DEFAULT_PRICES
from pytest_oneshot.report.rundir import item_dir_name
from pytest_oneshot.usage import TokenUsage

pytestmark = pytest.mark.codex

CANARY = "sk-canary-" + "5f0c2a9e71d84b36"
RunAndParse = Callable[..., Any]
"""``run_and_parse`` from conftest: runs pytest, returns its ``ParsedRun``."""


@pytest.fixture
def traced(pytester: pytest.Pytester, codex_bin: Path, mitmdump: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The pytest runs below use the real codex and mitmdump, and keep all state inside the pytester dir."""
    monkeypatch.setenv("ONESHOT_CODEX_BIN", str(codex_bin))
    monkeypatch.setenv("ONESHOT_MITMDUMP", str(mitmdump))
    monkeypatch.setenv("ONESHOT_STATE_DIR", str(pytester.path / "state"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return pytester.path


def _cassette(tasks: Path, task: str, name: str = "replay") -> Cassette:
    return load_cassette(tasks / task / "cassettes" / f"{name}.json")


def _usage(cassette: Cassette) -> dict[str, int]:
    """What the gateway must count for a session that played every turn of ``cassette``."""
    names = [field.name for field in dataclasses.fields(TokenUsage)]
    usage = TokenUsage(**{name: sum(getattr(turn.usage, name) for turn in cassette.turns) for name in names})
    return {**usage.__dict__, "total_tokens": usage.total_tokens}


def _session_id(run: Any, item_id: str) -> str:
    return f"{run.report['run_id']}-{item_dir_name(item_id)}"


def _rows(db: Path) -> dict[str, dict[str, Any]]:
    """Flow id -> ``meta`` of every raw row (the export keeps bodies; the row also keeps request headers)."""
    with sqlite3.connect(db) as conn:
        return {flow: json.loads(meta) for flow, meta in conn.execute("SELECT id, meta_json FROM traces")}


def test_each_trial_is_traced_and_its_recording_replays_to_the_same_diff(
    traced: Path, shipped_tasks: Path, run_and_parse: RunAndParse
) -> None:
    tasks = ("fix-off-by-one", "add-exclude-option")
    run = run_and_parse(*(f"tasks/{task}" for task in tasks), "--oneshot-trace", "-n", "2")

    run.result.assert_outcomes(passed=2)
    run_root = traced / "runs" / run.report["run_id"]
    rows = _rows(run_root / "traces.sqlite3")
    for task in tasks:
        item_id = f"{task}[replay-r0]"
        item, session_id = run.items()[item_id], _session_id(run, item_id)
        cassette = _cassette(shipped_tasks, task)
        assert item["model_requests"] == len(cassette.turns)
        assert item["tokens"] == _usage(cassette) and item["tokens_agree"] is True
        assert item["cost_usd"] is None, "replay has no price: unknown, not free"
        assert item["trace"] == "trace.json" and item["trace_complete"] is True
        trace = json.loads((Path(item["run_dir"]) / "trace.json").read_text())
        assert trace["session_id"] == session_id and trace["n_requests"] == len(cassette.turns)
        for request in trace["traces"]:
            assert request["status"] == 200
            sent = rows[request["id"]]["request_headers"]
            assert sent["x-oneshot-session"] == session_id and "authorization" not in sent
        props = run.properties(task)
        assert props["oneshot.trace"] == f"{item['run_dir']}/trace.json"
        assert props["oneshot.tokens.total_tokens"] == str(item["tokens"]["total_tokens"])
        assert props["oneshot.cost_usd"] == "unknown"
        summary = next(row for row in run.report["summary"] if row["task"] == task)
        assert (summary["total_tokens"], summary["cost_usd"]) == (item["tokens"]["total_tokens"], None)
    assert len(rows) == sum(item["model_requests"] for item in run.items().values())
    assert {row["session_source"] for row in rows.values()} == {"header:x-oneshot-session"}
    assert len(list((run_root / "logs").glob("mitmdump-*.log"))) == 2, "one recorder per xdist worker, one database"

    # The recording, as a cassette (the harness's own file and the CLI agree), replays to the same change.
    recorded_item = run.items()["fix-off-by-one[replay-r0]"]
    recording = to_cassette(json.loads((Path(recorded_item["run_dir"]) / "trace.json").read_text()))
    exported = shipped_tasks / "fix-off-by-one" / "cassettes" / "recorded.json"
    subprocess.run(
        [sys.executable, "-m", "pytest_oneshot.cli", "traces", "export", _session_id(run, "fix-off-by-one[replay-r0]"),
         "--cassette", "--db", str(run_root / "traces.sqlite3"), "-o", str(exported)],
        check=True, capture_output=True,
    )  # fmt: skip
    assert json.loads(exported.read_text()) == recording
    assert load_cassette(exported).turns == _cassette(shipped_tasks, "fix-off-by-one").turns

    replayed = run_and_parse("tasks/fix-off-by-one", "--oneshot-model=replay:recorded")

    replayed.result.assert_outcomes(passed=1)
    item = replayed.items()["fix-off-by-one[replay:recorded-r0]"]
    assert item["tokens"] == recorded_item["tokens"]
    assert replayed.diff(item["item_id"]) == run.diff(recorded_item["item_id"]) != []
    assert item["trace"] is None and not (Path(item["run_dir"]) / "trace.json").exists(), "no tracing unless asked"


@pytest.fixture
def model_api(shipped_tasks: Path) -> Iterator[tuple[ScriptedResponsesServer, str, str]]:
    """A stand-in for the model API in this process: (server, script key, base URL) playing fix-off-by-one."""
    key = uuid.uuid4().hex[:12]
    with ScriptedResponsesServer() as server:
        yield server, key, server.add_script(key, _cassette(shipped_tasks, "fix-off-by-one"))


def test_api_key_reaches_only_the_model_and_cost_is_priced(
    traced: Path,
    shipped_tasks: Path,
    run_and_parse: RunAndParse,
    model_api: tuple[ScriptedResponsesServer, str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, key, base_url = model_api
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)

    run = run_and_parse(
        "tasks/fix-off-by-one", "--oneshot-model=gpt-5-mini", f"--oneshot-base-url={base_url}", "--oneshot-trace"
    )

    run.result.assert_outcomes(passed=1)
    received = server.requests(key)
    assert received and {r.headers.get("authorization") for r in received} == {f"Bearer {CANARY}"}
    assert all("x-oneshot-session" not in r.headers for r in received), "the session header stops at the limiter"
    written = [path for path in traced.rglob("*") if path.is_file()]
    assert any(path.name == "traces.sqlite3" for path in written) and any(path.suffix == ".log" for path in written)
    assert [path for path in written if CANARY.encode() in path.read_bytes()] == []
    assert CANARY not in run.result.stdout.str() + run.result.stderr.str()

    item = run.items()["fix-off-by-one[gpt-5-mini-r0]"]
    rows = _rows(traced / "runs" / run.report["run_id"] / "traces.sqlite3")
    assert len(rows) == len(received) == item["model_requests"]
    for row in rows.values():
        assert row["session_id"] == _session_id(run, "fix-off-by-one[gpt-5-mini-r0]")
        assert "authorization" not in row["request_headers"], "the recorder never saw a key, not even redacted"
    price, tokens = DEFAULT_PRICES["gpt-5-mini"], item["tokens"]
    assert price.cached_input is not None and tokens["cached_input_tokens"] > 0
    by_hand = (
        (tokens["input_tokens"] - tokens["cached_input_tokens"]) * price.input
        + tokens["cached_input_tokens"] * price.cached_input
        + tokens["output_tokens"] * price.output
    ) / 1e6
    assert tokens == _usage(_cassette(shipped_tasks, "fix-off-by-one")) and item["cost_usd"] == pytest.approx(by_hand)
    assert run.properties("fix-off-by-one")["oneshot.cost_usd"] == str(item["cost_usd"])
    assert run.report["summary"][0]["cost_usd"] == item["cost_usd"]


def test_token_limit_is_enforced_on_the_traced_path(
    traced: Path, shipped_tasks: Path, run_and_parse: RunAndParse
) -> None:
    meta_path = shipped_tasks / "fix-off-by-one" / "tb_meta.json"
    meta = json.loads(meta_path.read_text())
    meta["limits"]["token_limit"] = 10_000  # the first two turns spend 17741 tokens
    meta_path.write_text(json.dumps(meta))

    run = run_and_parse("tasks/fix-off-by-one", "--oneshot-trace")

    run.result.assert_outcomes(failed=1)
    item = run.items()["fix-off-by-one[replay-r0]"]
    assert item["outcome"] == "token_limit"
    assert item["reason"].startswith("token limit of 10000 reached (17741 tokens used)")
    assert item["model_requests"] == 3 and item["tokens"]["total_tokens"] == 17741
    trace = json.loads((Path(item["run_dir"]) / "trace.json").read_text())
    assert [request["status"] for request in trace["traces"]] == [200, 200, 429]
    assert trace["traces"][-1]["output"]["error"]["code"] == "insufficient_quota"


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ({"prices.json": '{"my-model": {"input": 1.5}}'}, ["--oneshot-prices=prices.json"],
         "*/prices.json: my-model.output: Field required *"),
        ({"prices.json": '{"my-model": {"input": -1, "output": 2}}'}, ["--oneshot-prices=prices.json"],
         "*/prices.json: my-model.input: Input should be greater than or equal to 0 (got -1)"),
        ({"prices.json": "{"}, ["--oneshot-prices=prices.json"], "*/prices.json: not valid JSON *"),
        ({}, ["--oneshot-prices=missing.json"], "*/missing.json: cannot read prices file (No such file or directory)"),
        ({"ONESHOT_MITMDUMP": "/nonexistent/mitmdump"}, ["--oneshot-trace"],
         "*--oneshot-trace: ONESHOT_MITMDUMP=*: not an executable file; run `oneshot proxy install`*"),
        ({"ONESHOT_TRACE": "maybe"}, [], "*ONESHOT_TRACE: must be true or false (1/0, yes/no, on/off) (got 'maybe')"),
    ],
    ids=["prices-missing-field", "prices-negative", "prices-json", "prices-file", "no-mitmdump", "trace-env"],
)  # fmt: skip
def test_usage_errors_are_one_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, setup: dict[str, str], args: list[str], message: str
) -> None:
    for name, value in setup.items():
        if name.isupper():
            monkeypatch.setenv(name, value)
        else:
            (pytester.path / name).write_text(value)

    result = pytester.runpytest(*args)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert len(result.stderr.lines) == 1 or "Traceback" not in result.stderr.str()


def test_trace_flag_from_ini_and_env(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("[pytest]\noneshot_trace = yes\n")
    monkeypatch.setenv("ONESHOT_MITMDUMP", sys.executable)  # an executable is all configuration checks
    assert pytester.runpytest("--collect-only").ret == pytest.ExitCode.NO_TESTS_COLLECTED
    monkeypatch.setenv("ONESHOT_MITMDUMP", "/nonexistent/mitmdump")
    assert pytester.runpytest("--collect-only").ret == pytest.ExitCode.USAGE_ERROR, "ini turned tracing on"
    monkeypatch.setenv("ONESHOT_TRACE", "off")
    assert pytester.runpytest("--collect-only").ret == pytest.ExitCode.NO_TESTS_COLLECTED, "env beats ini"
