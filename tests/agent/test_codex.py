"""CodexAgent: the real Codex CLI in the local sandbox against the scripted Responses server.

Each run is a real ``codex exec`` (about a second); only the model is scripted.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.agent import AgentRequest, AgentResult
from pytest_oneshot.agent.codex import CodexAgent
from pytest_oneshot.errors import InfraError, OneshotError
from pytest_oneshot.model.cassette import (
    HttpError,
    StreamError,
    Turn,
    Usage,
    apply_patch,
    exec_command,
    insufficient_quota,
    message,
)
from pytest_oneshot.model.scripted import ReceivedRequest, ScriptedResponsesServer
from pytest_oneshot.repo import snapshot
from pytest_oneshot.sandbox import SandboxSpec
from pytest_oneshot.sandbox.local import LocalSandbox
from pytest_oneshot.task import load_task

pytestmark = pytest.mark.codex

CANARY = "sk-canary-" + "7c1e4b90d2"
CANARY_IN_SHELL = '"sk-canary""-7c1e4b90d2"'
"""The canary as a shell word whose text does not hold the canary (commands are logged)."""
FIX = "*** Begin Patch\n*** Update File: calc/__init__.py\n@@\n-    return a - b\n+    return a + b\n*** End Patch\n"


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedResponsesServer]:
    with ScriptedResponsesServer() as running:
        yield running


@dataclass
class Run:
    result: AgentResult
    sandbox: LocalSandbox
    log_dir: Path
    requests: list[ReceivedRequest]

    def tool_output(self, call_id: str) -> str:
        """What codex sent the model for ``call_id`` (in the request after the call)."""
        return self.requests[-1].tool_outputs()[call_id]


RunCodex = Callable[..., Run]


@pytest.fixture
def run_codex(
    codex_bin: Path,
    server: ScriptedResponsesServer,
    make_task: Callable[..., Path],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> RunCodex:
    """Run CodexAgent on a fresh sandbox of the ``calc`` task with ``script`` as the model."""
    task = load_task(make_task(tmp_path / "task"))
    repo = snapshot(task)

    def run(
        script: Sequence[Turn],
        *,
        timeout_sec: float = 60,
        token_limit: int | None = None,
        env: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
    ) -> Run:
        key = uuid.uuid4().hex[:12]
        agent = CodexAgent(
            {
                "model": "test-model",
                "base_url": server.add_script(key, script),
                "codex_bin": str(codex_bin),
                **(options or {}),
            }
        )
        sandbox = LocalSandbox(
            SandboxSpec(
                task=task,
                repo_snapshot=repo,
                trial_id=key,
                run_id="codex-test",
                network=agent.network,
                mounts=agent.mounts(),
            )
        )
        request.addfinalizer(sandbox.stop)
        sandbox.start()
        log_dir = tmp_path / f"agent-{key}"
        result = agent.run(
            sandbox,
            AgentRequest(task, task.instructions, None, timeout_sec, log_dir, token_limit=token_limit, env=env or {}),
        )
        return Run(result, sandbox, log_dir, server.requests(key))

    return run


def test_apply_patch_edits_the_workspace(run_codex: RunCodex) -> None:
    run = run_codex(
        [
            Turn(output=[apply_patch(FIX)], usage=Usage(input_tokens=100, output_tokens=10, cached_input_tokens=40)),
            Turn(
                output=[message("Fixed the sign.")],
                usage=Usage(input_tokens=150, output_tokens=5, reasoning_output_tokens=2),
            ),
        ],
        options={"reasoning_effort": "low"},
    )

    assert run.result.status == "completed", run.result
    assert run.sandbox.read_file("calc/__init__.py") == b"def add(a, b):\n    return a + b\n"
    usage = run.result.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.reasoning_output_tokens) == (
        250,
        15,
        40,
        2,
    )
    assert (run.log_dir / "last_message.md").read_text() == "Fixed the sign."
    events = [json.loads(line) for line in (run.log_dir / "events.jsonl").read_text().splitlines()]
    assert any(event.get("item", {}).get("type") == "file_change" for event in events)
    assert run.requests[0].body["reasoning"]["effort"] == "low"
    assert run.requests[0].body["model"] == "test-model"


def test_exec_command_output_round_trips_to_the_model(run_codex: RunCodex) -> None:
    run = run_codex(
        [
            Turn(output=[exec_command("echo marker-$((6*7)); cat calc/__init__.py", call_id="look")]),
            Turn(output=[message("Seen.")]),
        ]
    )

    assert run.result.status == "completed", run.result
    assert [r.turn for r in run.requests] == [0, 1]
    assert "marker-42" in run.tool_output("look") and "return a - b" in run.tool_output("look")
    prompt = json.dumps(run.requests[0].input[-1])
    assert "calc.add subtracts instead of adding" in prompt, "the task's instructions are the user message"


@pytest.mark.parametrize(
    ("turn", "expected"),
    [
        (Turn(http_error=insufficient_quota()), "Quota exceeded"),
        (
            Turn(http_error=HttpError(status=400, body={"error": {"code": "bad", "message": "bad tool schema"}})),
            "bad tool schema",
        ),
        (Turn(stream_error=StreamError(code="server_error", message="boom in the stream")), "boom in the stream"),
    ],
    ids=["429-quota", "400", "response.failed"],
)
def test_model_errors_are_agent_errors_with_the_message(run_codex: RunCodex, turn: Turn, expected: str) -> None:
    run = run_codex([Turn(output=[apply_patch(FIX)]), turn])

    assert run.result.status == "agent_error"
    assert expected in run.result.message
    assert run.result.exit_code == 1
    assert b"a + b" in run.sandbox.read_file("calc/__init__.py"), "edits before the error are kept"


def test_token_limit_stops_codex_and_keeps_its_edits(run_codex: RunCodex) -> None:
    run = run_codex(
        [
            Turn(output=[apply_patch(FIX)], usage=Usage(input_tokens=400, output_tokens=200)),
            Turn(output=[exec_command("echo over budget > extra.txt")]),
            Turn(output=[message("never")]),
        ],
        token_limit=500,
    )

    assert run.result.status == "token_limit", run.result
    assert "token limit of 500 reached (600 tokens used)" in run.result.message
    assert run.result.usage is not None and run.result.usage.total_tokens == 600
    assert len(run.requests) == 1, "the request over budget never reached the model"
    assert b"a + b" in run.sandbox.read_file("calc/__init__.py")


def test_hung_model_is_a_timeout(run_codex: RunCodex) -> None:
    run = run_codex([Turn(output=[apply_patch(FIX)]), Turn(hang=True)], timeout_sec=3)

    assert run.result.status == "timeout", run.result
    assert "3s agent timeout" in run.result.message
    assert [r.turn for r in run.requests] == [0, 1]
    assert b"a + b" in run.sandbox.read_file("calc/__init__.py")


def test_parallel_runs_on_one_server_do_not_mix_scripts(run_codex: RunCodex) -> None:
    def script(who: str) -> list[Turn]:
        patch = f"*** Begin Patch\n*** Add File: who.txt\n+{who}\n*** End Patch\n"
        return [
            Turn(output=[apply_patch(patch)], latency_sec=0.2),
            Turn(output=[exec_command("cat who.txt", call_id="cat")], latency_sec=0.2),
            Turn(output=[message(f"I am {who}")]),
        ]

    runs: dict[str, Run] = {}
    threads = [
        threading.Thread(target=lambda who=who: runs.__setitem__(who, run_codex(script(who))))
        for who in ("alpha", "beta")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for who, run in runs.items():
        assert run.result.status == "completed", run.result
        assert run.sandbox.read_file("who.txt") == f"{who}\n".encode()
        assert run.tool_output("cat").endswith(f"{who}\n")
        assert len({r.session_id for r in run.requests}) == 1 and [r.turn for r in run.requests] == [0, 1, 2]
    assert runs["alpha"].requests[0].session_id != runs["beta"].requests[0].session_id


def test_api_key_reaches_the_model_and_nothing_else(run_codex: RunCodex) -> None:
    probe = f'env; grep -rlF {CANARY_IN_SHELL} "$CODEX_HOME" "$HOME" /workspace /proc/$PPID/environ; echo grep-exit=$?'
    run = run_codex(
        [
            Turn(output=[exec_command(probe, call_id="probe")]),
            Turn(output=[apply_patch(FIX)]),
            Turn(output=[message("ok")]),
        ],
        env={"OPENAI_API_KEY": CANARY},
    )

    assert run.result.status == "completed", run.result
    assert {r.headers.get("authorization") for r in run.requests} == {f"Bearer {CANARY}"}, "the model got the key"
    seen_inside = run.tool_output("probe")
    assert "CODEX_HOME=" in seen_inside and "grep-exit=1" in seen_inside, seen_inside
    assert CANARY not in seen_inside
    after = run.sandbox.exec(["bash", "-c", f'grep -rlF {CANARY_IN_SHELL} "$HOME" /workspace; echo grep-exit=$?'])
    assert after.stdout.decode().strip() == "grep-exit=1"
    written = [path for path in run.log_dir.rglob("*") if path.is_file()]
    assert {path.name for path in written} >= {"codex.log", "events.jsonl", "config.toml", "last_message.md"}
    assert [path for path in written if CANARY.encode() in path.read_bytes()] == []


def test_missing_model_is_an_infra_error(run_codex: RunCodex) -> None:
    with pytest.raises(InfraError, match="codex needs a model"):
        run_codex([Turn(output=[message("never")])], options={"model": ""})


def test_config_sends_no_key_and_contacts_only_the_route(codex_bin: Path) -> None:
    agent = CodexAgent({"codex_bin": str(codex_bin), "reasoning_effort": "high"})

    config = agent.config_toml('mod"el', "http://127.0.0.1:1/r/x")

    assert 'model = "mod\\"el"' in config
    assert 'base_url = "http://127.0.0.1:1/r/x"' in config
    assert 'model_reasoning_effort = "high"' in config
    assert "env_key" not in config and "request_max_retries = 0" in config
    assert "[analytics]\nenabled = false" in config and "[features]\nplugins = false" in config


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"reasoning_effort": "extreme"}, "reasoning_effort must be one of none, minimal, low"),
        ({"codex_bin": "/nonexistent/codex"}, "codex binary '/nonexistent/codex' is not a file; install it with `npm"),
    ],
)
def test_bad_options_say_how_to_fix(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(OneshotError, match=problem):
        CodexAgent(options)


def test_binary_from_env_is_the_one_mounted(codex_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONESHOT_CODEX_BIN", str(codex_bin))

    assert CodexAgent({}).mounts() == {codex_bin: "/opt/oneshot/bin/codex"}


def test_the_binary_is_found_once_for_the_session(codex_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's options name the binary found (so xdist workers need not ask npm again); one that
    cannot be found is left for each agent to report."""
    monkeypatch.setenv("ONESHOT_CODEX_BIN", str(codex_bin))
    found = CodexAgent.session_options({"model": "m", "codex_bin": ""})
    assert found == {"model": "m", "codex_bin": str(codex_bin)}
    monkeypatch.delenv("ONESHOT_CODEX_BIN")
    assert CodexAgent(found).mounts() == {codex_bin: "/opt/oneshot/bin/codex"}
    assert CodexAgent.session_options({"codex_bin": "/nonexistent/codex"}) == {"codex_bin": "/nonexistent/codex"}
