"""The modal sandbox: end to end against the test double of Modal's cloud (``tests/fixtures/fake_modal``),
the double's faithfulness to the real client, and a live run when Modal credentials are present.

The Sandbox contract itself runs on the double as the ``modal-double`` backend of tests/contract/.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.model import sidecar
from pytest_oneshot.repo import snapshot
from pytest_oneshot.sandbox import SandboxSpec, SandboxUnavailableError, default_sandbox_registry, modal_gateway
from pytest_oneshot.sandbox.modal import ModalSandbox
from pytest_oneshot.sandbox.modal_image import DEFAULT_BASE, modal_dockerfile
from pytest_oneshot.task import load_task

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
import fake_modal  # noqa: E402 - the double lives with the fixtures

real_modal = pytest.importorskip(
    "modal", reason="the real client is the reference: pip install 'pytest-oneshot[modal]'"
)

# (double, real) pairs: every method of the client that pytest_oneshot/sandbox/modal.py and modal_image.py call.
SURFACE: dict[str, tuple[Any, Any]] = {
    "App.lookup": (fake_modal.App.lookup, real_modal.App.lookup),
    "Image.from_dockerfile": (fake_modal.Image.from_dockerfile, real_modal.Image.from_dockerfile),
    "Image.build": (fake_modal.Image.build, real_modal.Image.build),
    "Secret.from_dict": (fake_modal.Secret.from_dict, real_modal.Secret.from_dict),
    "Volume.from_name": (fake_modal.Volume.from_name, real_modal.Volume.from_name),
    "Volume.read_only": (fake_modal.Volume.read_only, real_modal.Volume.read_only),
    "Volume.listdir": (fake_modal.Volume.listdir, real_modal.Volume.listdir),
    "Volume.batch_upload": (fake_modal.Volume.batch_upload, real_modal.Volume.batch_upload),
    "Sandbox.create": (fake_modal.Sandbox.create, real_modal.Sandbox.create),
    "Sandbox.exec": (fake_modal.Sandbox.exec, real_modal.Sandbox.exec),
    "Sandbox.poll": (fake_modal.Sandbox.poll, real_modal.Sandbox.poll),
    "Sandbox.terminate": (fake_modal.Sandbox.terminate, real_modal.Sandbox.terminate),
    "Sandbox.get_tags": (fake_modal.Sandbox.get_tags, real_modal.Sandbox.get_tags),
    "Sandbox.list": (fake_modal.Sandbox.list, real_modal.Sandbox.list),
    "Sandbox.tunnels": (fake_modal.Sandbox.tunnels, real_modal.Sandbox.tunnels),
    "Image.debian_slim": (fake_modal.Image.debian_slim, real_modal.Image.debian_slim),
    "Image.pip_install": (fake_modal.Image.pip_install, real_modal.Image.pip_install),
    "Image.add_local_python_source": (
        fake_modal.Image.add_local_python_source,
        real_modal.Image.add_local_python_source,
    ),
    "ContainerProcess.poll": (fake_modal.ContainerProcess.poll, real_modal.container_process.ContainerProcess.poll),
    "ContainerProcess.wait": (fake_modal.ContainerProcess.wait, real_modal.container_process.ContainerProcess.wait),
    "StreamWriter.write": (fake_modal.StreamWriter.write, real_modal.io_streams.StreamWriter.write),
    "StreamWriter.write_eof": (fake_modal.StreamWriter.write_eof, real_modal.io_streams.StreamWriter.write_eof),
    "StreamWriter.drain": (fake_modal.StreamWriter.drain, real_modal.io_streams.StreamWriter.drain),
    "_Batch.put_file": (fake_modal._Batch.put_file, real_modal.volume.VolumeUploadContextManager.put_file),
    "_Batch.put_directory": (
        fake_modal._Batch.put_directory,
        real_modal.volume.VolumeUploadContextManager.put_directory,
    ),
}


@pytest.mark.parametrize("name", SURFACE)
def test_the_double_has_the_real_clients_signatures(name: str) -> None:
    """Every parameter the double takes, the real method takes by the same name and kind, in the same order:
    so a call the modal sandbox makes that the double accepts, the real client accepts too."""
    double, real = (inspect.signature(method) for method in SURFACE[name])
    real_params = list(real.parameters.values())
    position = -1
    for param in double.parameters.values():
        assert param.name in real.parameters, f"{name}: the real client has no parameter {param.name!r}"
        found = real.parameters[param.name]
        assert found.kind == param.kind, f"{name}({param.name}): {param.kind} here, {found.kind} in modal"
        assert real_params.index(found) > position, f"{name}({param.name}): out of the real order"
        position = real_params.index(found)
    missing = [p.name for p in real_params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    assert set(missing) <= set(double.parameters), f"{name}: the real client requires {missing}"


def test_the_tunnel_has_the_real_clients_fields() -> None:
    """The gateway sidecar's route is built from ``Tunnel.url`` (the double's is plain HTTP: see its docstring)."""
    real = {field.name for field in dataclasses.fields(real_modal._tunnel.Tunnel)}
    assert {field.name for field in dataclasses.fields(fake_modal.Tunnel)} == real
    assert isinstance(real_modal._tunnel.Tunnel.url, property) and isinstance(fake_modal.Tunnel.url, property)


def test_the_sidecars_variables_are_the_hosts() -> None:
    """The sidecar program and the code that starts it name the Secret's variables alike (neither imports the other)."""
    assert (sidecar.KEY_ENV, sidecar.TOKEN_ENV) == (modal_gateway.KEY_ENV, modal_gateway.TOKEN_ENV)


def test_the_exceptions_caught_are_the_real_clients() -> None:
    for name in ("Error", "NotFoundError", "SandboxTerminatedError", "ImageBuildError"):
        real = getattr(real_modal.exception, name)
        assert issubclass(real, real_modal.exception.Error)
        assert issubclass(getattr(fake_modal.exception, name), fake_modal.exception.Error)


def test_modal_is_registered_lazily_with_its_install_hint() -> None:
    assert "modal" in default_sandbox_registry().names()
    source = Path(ModalSandbox.__module__.replace(".", "/") + ".py")
    assert "import modal" not in (Path(__file__).parents[2] / source).read_text()  # only through modal_client()


def test_the_image_is_the_docker_sandboxs_dockerfile(make_real_task: Callable[..., Path], tmp_path: Path) -> None:
    plain = load_task(make_real_task(tmp_path / "plain", environment={"setup": ["echo set up"]}))
    dockerfile = modal_dockerfile(plain)
    assert dockerfile.startswith(DEFAULT_BASE)
    assert "COPY repo /workspace" in dockerfile and '"echo set up"' in dockerfile
    assert modal_dockerfile(plain, "python:3.11").startswith("FROM python:3.11\n")
    deps = load_task(make_real_task(tmp_path / "deps", environment={"pip": ["-e", "."]}))
    text = modal_dockerfile(deps, "oneshot-base:bookworm")
    assert text.count("FROM ") == 1 and "/opt/oneshot/venv" in text and "COPY oneshot-build-ca" not in text


def _spec(task_dir: Path, **kwargs: Any) -> SandboxSpec:
    task = load_task(task_dir)
    options = {"modal_image": "oneshot-base:bookworm", "modal_app": "oneshot-test"}
    return SandboxSpec(task=task, repo_snapshot=snapshot(task), trial_id="t-" + secrets.token_hex(4), run_id="r",
                       options=options, **kwargs)  # fmt: skip


@pytest.mark.docker
def test_the_model_key_travels_as_a_secret_never_as_an_argument(
    modal_double: Path, make_real_task: Callable[..., Path], tmp_path: Path
) -> None:
    canary = "sk-modal-" + secrets.token_hex(8)
    sandbox = ModalSandbox(_spec(make_real_task(tmp_path / "task")))
    sandbox.start()
    try:
        seen = sandbox.exec(["sh", "-c", 'printf %s "$OPENAI_API_KEY"'], env={"OPENAI_API_KEY": canary}, timeout=60)
        assert seen.stdout.decode() == canary
    finally:
        sandbox.stop()
    calls = (modal_double / "calls.jsonl").read_text()
    assert "Sandbox.exec" in calls and "OPENAI_API_KEY" in calls and canary not in calls


@pytest.mark.docker
def test_loopback_without_a_model_route_is_refused_with_the_reason(
    modal_double: Path, make_real_task: Callable[..., Path], tmp_path: Path
) -> None:
    """A model agent's route is its trial's gateway sidecar (tests/sandbox/test_modal_agents.py); without one,
    what the agent would need is on this machine's loopback."""
    sandbox = ModalSandbox(_spec(make_real_task(tmp_path / "task"), network="loopback"))
    with pytest.raises(SandboxUnavailableError, match=r"Modal's cloud cannot reach.*gateway runs beside it"):
        sandbox.start()


@pytest.mark.docker
def test_stale_sandboxes_of_dead_runs_are_terminated(
    modal_double: Path, make_real_task: Callable[..., Path], tmp_path: Path
) -> None:
    live = ModalSandbox(_spec(make_real_task(tmp_path / "task")))
    live.start()
    try:
        app = fake_modal.App.lookup("oneshot-test", create_if_missing=True)
        tags = {**live._sandbox.get_tags(), "oneshot.owner.pid": "999999999"}  # a pid no process has
        image = fake_modal.Image("", tmp_path)
        image.tag = fake_modal._engine().api.inspect_container(live._sandbox.object_id)["Config"]["Image"]
        dead = fake_modal.Sandbox.create("sleep", "infinity", app=app, image=image, tags=tags)
        removed = ModalSandbox.cleanup_stale({"modal_app": "oneshot-test"})
        assert removed == [dead.object_id] and dead.poll() is not None
        assert live.exec(["true"], timeout=60).ok
    finally:
        live.stop()


@pytest.mark.docker
@pytest.mark.parametrize(("agent", "outcome"), [("oracle", "passed"), ("nop", "failed")])
def test_a_shipped_task_end_to_end_on_the_double(
    modal_double: Path, shipped_tasks: Path, run_and_parse: Callable[..., Any], agent: str, outcome: str
) -> None:
    """Two rollouts in flight in one process (``--oneshot-concurrency 2``), each with its two Sandboxes."""
    run = run_and_parse(
        "tasks/fix-off-by-one", "--oneshot-sandbox=modal", f"--oneshot-agent={agent}", "--oneshot-rollouts=2",
        "--oneshot-concurrency=2", "--oneshot-modal-image=oneshot-base:bookworm",
        "-p", "no:xdist",
    )  # fmt: skip
    run.result.assert_outcomes(**{outcome: 2})
    item = run.items()[f"fix-off-by-one[{agent}-r0]"]
    assert item["outcome"] == outcome and item["resolved"] is (outcome == "passed")
    created = [json.loads(line) for line in (modal_double / "calls.jsonl").read_text().splitlines()]
    assert sum(call["call"] == "Sandbox.create" for call in created) == 4  # two per trial
    assert sum(call["call"] == "Sandbox.terminate" for call in created) >= 4


LIVE = bool(os.environ.get("MODAL_TOKEN_ID") and os.environ.get("MODAL_TOKEN_SECRET"))


@pytest.mark.skipif(not LIVE, reason="live Modal test: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (modal token new)")
def test_live_oracle_and_nop_on_modal(shipped_tasks: Path, run_and_parse: Callable[..., Any]) -> None:
    """On Modal itself: the shipped task's image is built by Modal's builder from the default base."""
    for agent, outcome in (("oracle", "passed"), ("nop", "failed")):
        run = run_and_parse("tasks/fix-off-by-one", "--oneshot-sandbox=modal", f"--oneshot-agent={agent}", timeout=1800)
        run.result.assert_outcomes(**{outcome: 1})


@pytest.mark.codex
@pytest.mark.skipif(not LIVE, reason="live Modal test: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (modal token new)")
def test_live_codex_through_its_gateway_sidecar(
    shipped_tasks: Path, codex_bin: Path, run_and_parse: Callable[..., Any]
) -> None:
    """On Modal itself: codex replays the task's cassette from its trial's gateway sidecar, over the tunnel."""
    run = run_and_parse("tasks/fix-off-by-one", "--oneshot-sandbox=modal", "--oneshot-agent=codex", timeout=1800)
    run.result.assert_outcomes(passed=1)
    item = run.items()["fix-off-by-one[replay-r0]"]
    assert item["model_requests"] >= 2 and item["tokens_agree"] is True
