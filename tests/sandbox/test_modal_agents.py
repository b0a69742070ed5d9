"""Model agents on the modal sandbox, against the test double of Modal's cloud: the real Codex CLI in the
agent's Sandbox talks to its trial's gateway in a sidecar Sandbox (``pytest_oneshot/sandbox/modal_gateway.py``),
which alone holds the key, counts the tokens and enforces the limit."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.errors import OneshotError
from pytest_oneshot.model.cassette import Turn, Usage, exec_command, message
from pytest_oneshot.model.gateway import ModelGateway
from pytest_oneshot.model.scripted import ScriptedResponsesServer
from pytest_oneshot.sandbox.dockerd import Engine
from pytest_oneshot.sandbox.modal import ModalSandbox
from pytest_oneshot.sandbox.modal_gateway import ModalRouteHost

pytestmark = [pytest.mark.docker, pytest.mark.codex]

CANARY = "sk-canary-" + "modal-5e1d07"
CANARY_IN_SHELL = '"sk-canary-""modal-5e1d07"'
"""The canary as a shell word whose text does not hold it (the agent's commands are logged)."""
MODAL = ("--oneshot-sandbox=modal", "--oneshot-agent=codex", "--oneshot-modal-image=oneshot-base:bookworm")
# Run by codex in the agent's Sandbox: its environment, and every process's environment and command line,
# every file (the read-only codex Volume aside) searched for the key.
PROBE = (
    "env; grep -lsF -- " + CANARY_IN_SHELL + " /proc/[0-9]*/environ /proc/[0-9]*/cmdline; "
    "grep -rlsF -D skip --exclude-dir=proc --exclude-dir=sys --exclude-dir=mounts -- " + CANARY_IN_SHELL + " /; "
    "echo grep-exit=$?"
)


def _calls(home: Path, name: str) -> list[dict[str, str]]:
    calls = [json.loads(line) for line in (home / "calls.jsonl").read_text().splitlines()]
    return [call for call in calls if call["call"] == name]


def _by_role(creates: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    """The trial's Sandbox.create calls by their trial tag's suffix: gateway, score, or the agent's."""
    roles = {}
    for call in creates:
        trial = call["kwargs"].split("'oneshot.trial': '", 1)[1].split("'", 1)[0]
        roles[trial.rsplit("-", 1)[1] if trial.endswith(("-gateway", "-score")) else "agent"] = call
    return roles


def test_codex_replay_solves_a_shipped_task_through_the_sidecar(
    modal_double: Path, shipped_tasks: Path, codex_bin: Path, run_and_parse: Callable[..., Any]
) -> None:
    """The cassette is replayed inside the sidecar, which then needs no network; the agent may reach its tunnel."""
    run = run_and_parse("tasks/fix-off-by-one", *MODAL, "-p", "no:xdist")
    run.result.assert_outcomes(passed=1)
    item = run.items()["fix-off-by-one[replay-r0]"]
    assert item["agent"]["status"] == "completed" and item["changed_files"] == ["pager/core.py"]
    assert item["model_requests"] >= 2 and item["tokens"]["total_tokens"] > 0 and item["tokens_agree"] is True
    roles = _by_role(_calls(modal_double, "Sandbox.create"))
    assert sorted(roles) == ["agent", "gateway", "score"]
    gateway, agent = roles["gateway"]["kwargs"], roles["agent"]["kwargs"]
    assert "'block_network': True" in gateway and "'encrypted_ports': [" in gateway and "owner.pid" in gateway
    assert "'block_network': False, 'outbound_domain_allowlist': ['127.0.0.1']" in agent
    assert "'block_network': True" in roles["score"]["kwargs"]
    started = [call for call in _calls(modal_double, "Sandbox.exec") if "pytest_oneshot.model.sidecar" in call["args"]]
    assert len(started) == 1 and "Secret(keys=['ONESHOT_GATEWAY_TOKEN'])" in started[0]["kwargs"]  # a replay: no key
    assert len(_calls(modal_double, "Sandbox.terminate")) >= 3


def test_the_key_is_a_secret_of_the_sidecar_alone(
    modal_double: Path,
    shipped_tasks: Path,
    codex_bin: Path,
    engine: Engine,
    run_and_parse: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model API on loopback (the scripted server) with a canary key: the key reaches the model through the
    sidecar and nothing else, and a script that changes nothing fails."""
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    with ScriptedResponsesServer() as server:
        probe = Turn(output=[exec_command(PROBE, call_id="probe")])
        url = server.add_script("nop", [probe, Turn(output=[message("Nothing to change.")])])
        run = run_and_parse(
            "tasks/fix-off-by-one", *MODAL, "--oneshot-model=test-model", f"--oneshot-base-url={url}", "-p", "no:xdist"
        )
        requests = server.requests("nop")
    run.result.assert_outcomes(failed=1)
    item = run.items()["fix-off-by-one[test-model-r0]"]
    assert item["agent"]["status"] == "completed" and item["resolved"] is False
    assert [request.headers.get("authorization") for request in requests] == [f"Bearer {CANARY}"] * 2
    seen = requests[-1].tool_outputs()["probe"]
    assert "grep-exit=1" in seen and "ONESHOT_IN_SANDBOX=1" in seen, seen  # the agent's env was read, found nothing
    assert CANARY not in seen and "ONESHOT_GATEWAY" not in seen, seen
    for path in Path(item["run_dir"]).rglob("*"):
        assert not path.is_file() or CANARY.encode() not in path.read_bytes(), path
    journal = (modal_double / "calls.jsonl").read_text()
    assert CANARY not in journal and "'ONESHOT_GATEWAY_KEY'" in journal  # a Secret's keys, never its values
    roles = _by_role(_calls(modal_double, "Sandbox.create"))
    assert "'outbound_domain_allowlist': ['127.0.0.1']" in roles["gateway"]["kwargs"]  # the upstream's host only
    for image in engine.api.images(filters={"label": "fake-modal"}):
        inspected = json.dumps([engine.api.inspect_image(image["Id"]), engine.api.history(image["Id"])])
        assert CANARY not in inspected, image["RepoTags"]


def test_token_limit_trips_on_modal_as_on_docker(
    modal_double: Path, shipped_tasks: Path, codex_bin: Path, run_and_parse: Callable[..., Any]
) -> None:
    meta_path = shipped_tasks / "fix-off-by-one" / "tb_meta.json"
    meta = json.loads(meta_path.read_text())
    meta["limits"]["token_limit"] = 500
    meta_path.write_text(json.dumps(meta))
    script = [
        Turn(output=[exec_command("echo first > first.txt")], usage=Usage(input_tokens=400, output_tokens=200)),
        Turn(output=[message("never")]),
    ]
    with ScriptedResponsesServer() as server:
        url = server.add_script("spend", script)
        run = run_and_parse(
            "tasks/fix-off-by-one", *MODAL, "--oneshot-model=test-model", f"--oneshot-base-url={url}", "-p", "no:xdist"
        )
        requests = server.requests("spend")
    item = run.items()["fix-off-by-one[test-model-r0]"]
    assert item["outcome"] == "token_limit", item["reason"]
    assert "token limit of 500 reached (600 tokens used)" in item["reason"]
    assert item["model_requests"] == 2 and item["tokens"]["total_tokens"] == 600
    assert len(requests) == 1, "the request over budget never reached the model"
    assert "first.txt" in item["changed_files"], "edits before the limit are kept"


def test_a_sidecar_is_tagged_read_back_terminated_and_reaped(
    modal_double: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = ModalRouteHost({"modal_app": "oneshot-test"}, "r")
    route = host.add("t-1", "http://127.0.0.1:9/v1", limit=7, api_key=CANARY, cassette=None)
    assert route.base_url.startswith("http://127.0.0.1:") and "/r/" in route.base_url
    assert (route.requests, route.refused, route.usage.total_tokens) == (0, 0, 0)
    tags = route.sandbox.get_tags()
    assert tags["oneshot.trial"] == "t-1-gateway" and tags["oneshot.owner.pid"] == str(os.getpid())
    assert ModalSandbox.cleanup_stale({"modal_app": "oneshot-test"}) == []  # its owner lives
    sandbox = route.sandbox
    host.stop()
    assert sandbox.poll() is not None and route.requests == 0  # terminated; the last counts kept
    dead = {**tags, "oneshot.owner.pid": "999999999"}  # a pid no process has
    monkeypatch.setattr("pytest_oneshot.sandbox.modal_gateway.Owner.labels", lambda self: dead)
    orphan = ModalRouteHost({"modal_app": "oneshot-test"}, "r").add(
        "t-2", "http://127.0.0.1:9/v1", limit=None, api_key=None, cassette=None
    )
    assert ModalSandbox.cleanup_stale({"modal_app": "oneshot-test"}) == [orphan.sandbox.object_id]
    assert orphan.sandbox.poll() is not None


class _NeverStarted:
    """A trace recorder that fails the test if the gateway starts it."""

    def start(self, upstream: str) -> str:
        raise AssertionError("a remote route has no loopback to record on")

    def export(self, session_id: str, requests: int, wait_sec: float) -> tuple[dict[str, Any], bool]:
        raise AssertionError("nothing was recorded")

    def stop(self) -> None:
        """Nothing to stop."""


def test_tracing_a_remote_gateway_is_an_error_saying_why() -> None:
    gateway = ModelGateway(host=lambda: ModalRouteHost({}, "r"), recorder=_NeverStarted())
    with pytest.raises(OneshotError, match="--oneshot-trace records on this machine's loopback"):
        gateway.open("t", upstream="http://127.0.0.1:9/v1")
    assert gateway.remote
