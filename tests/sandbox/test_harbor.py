"""Harbor interop in the docker sandbox: a Harbor task collected directly and imported (``oneshot harbor
import``) passes with ``oracle`` (its solve.sh) and fails with ``nop``; a task of ours exported (``oneshot
harbor export``) does the same when collected back, and runs in Harbor itself: ``harbor run`` on Harbor's
docker backend gives the oracle reward 1 and nop reward 0 (it needs Python >= 3.12 and the ``docker compose``
v2 plugin, which ``scripts/install-deps`` installs; offline, on our engine, with nothing pulled)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.sandbox.dockerd import Engine

HARBOR_TASK = Path(__file__).resolve().parent.parent / "fixtures" / "harbor_tasks" / "fix-greeting"
VALIDATE = ("--oneshot-sandbox=docker", "--oneshot-agent=nop", "--oneshot-validate", "-m", "oneshot_validate", "-rA")


def oneshot(*args: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pytest_oneshot.cli", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True)


def assert_oracle_passes_nop_fails(run: Any, name: str) -> None:
    items = run.items()
    oracle, nop = items[f"{name}[validate-oracle-r0]"], items[f"{name}[validate-nop-r0]"]
    assert oracle["outcome"] == "passed", oracle["reason"]
    assert nop["outcome"] == "failed", nop["reason"]
    assert oracle["rubrics"][0]["score"] == 1.0
    run.result.assert_outcomes(passed=2)


@pytest.mark.docker
def test_harbor_task_collected_directly(
    pytester: pytest.Pytester, engine: object, run_and_parse: Callable[..., Any]
) -> None:
    shutil.copytree(HARBOR_TASK, pytester.path / "tasks" / "fix-greeting")
    run = run_and_parse("tasks", *VALIDATE)
    assert_oracle_passes_nop_fails(run, "fix-greeting")
    nop = run.items()["fix-greeting[validate-nop-r0]"]
    assert nop["tests"]["reward"] == 0.0 and nop["changed_files"] == []
    oracle = run.items()["fix-greeting[validate-oracle-r0]"]
    assert oracle["changed_files"] == ["greet.py"], oracle["changed_files"]  # the WORKDIR's files are the workspace
    assert '+print("Hello, world!")' in (Path(oracle["run_dir"]) / "diff.patch").read_text()


FORGE_HARBOR = (
    "mkdir -p .harbor/tests && printf 'echo 1 > /logs/verifier/reward.txt\\n' > .harbor/tests/test.sh && "
    "mkdir -p /root/.oneshot/verifier && echo 1 > /logs/verifier/reward.txt && echo 1 > reward.txt"
)


@pytest.mark.docker
def test_harbor_task_cannot_be_forged(
    pytester: pytest.Pytester, engine: object, run_and_parse: Callable[..., Any]
) -> None:
    """The agent rewrites the test script where /tests points, writes Harbor's reward file in its own
    container and a reward.txt in the workspace: none of it reaches the scoring run."""
    shutil.copytree(HARBOR_TASK, pytester.path / "tasks" / "fix-greeting")
    args = ("--oneshot-sandbox=docker", "--oneshot-agent=command", f"--oneshot-agent-cmd={FORGE_HARBOR}")
    item = run_and_parse("tasks", *args).items()["fix-greeting[command-r0]"]
    assert item["outcome"] == "failed", item["reason"]
    assert item["tests"]["reward"] == 0.0
    assert ".harbor/tests/test.sh" in item["reset_to_start"], item["reset_to_start"]


@pytest.mark.docker
def test_imported_harbor_task_runs(
    pytester: pytest.Pytester, engine: object, run_and_parse: Callable[..., Any]
) -> None:
    oneshot("harbor", "import", HARBOR_TASK, pytester.path / "tasks" / "fix-greeting")
    meta = json.loads((pytester.path / "tasks" / "fix-greeting" / "tb_meta.json").read_text())
    assert meta["tests"]["mode"] == "reward" and meta["tests"]["report"] == "/logs/verifier/reward.txt"
    assert_oracle_passes_nop_fails(run_and_parse("tasks", *VALIDATE), "fix-greeting")


@pytest.mark.docker
def test_exported_task_runs_when_collected_back(
    pytester: pytest.Pytester, engine: object, make_task: Callable[..., Path], run_and_parse: Callable[..., Any]
) -> None:
    task = make_task(pytester.path / "ours" / "calc")
    oneshot("harbor", "export", task, pytester.path / "tasks" / "calc")
    run = run_and_parse("tasks", *VALIDATE)
    assert_oracle_passes_nop_fails(run, "calc")


def _python_312() -> str | None:
    """A Python >= 3.12 for Harbor that runs: on PATH (a pyenv shim may not), or a pyenv version."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [shutil.which(name) for name in ("python3.13", "python3.12")]
    candidates += [str(path) for path in sorted(pyenv.glob("3.1[2-9]*/bin/python3"), reverse=True)]
    for python in filter(None, candidates):
        probe = [python, "-c", "import sys; assert sys.version_info >= (3, 12)"]
        if subprocess.run(probe, capture_output=True).returncode == 0:
            return python
    return None


@pytest.fixture(scope="session")
def harbor_bin() -> Path:
    """Harbor from PyPI in a venv of its own (``ONESHOT_HARBOR`` names an installed ``harbor``)."""
    if os.environ.get("ONESHOT_HARBOR"):
        return Path(os.environ["ONESHOT_HARBOR"])
    python = _python_312()
    if python is None:
        pytest.skip("Harbor needs Python >= 3.12, and none is installed here (python3.12 or a pyenv version)")
    venv = Path.home() / ".cache" / "pytest-oneshot" / "harbor-venv"
    if not (venv / "bin" / "harbor").exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True)
        install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "harbor"], capture_output=True, text=True)
        if install.returncode != 0:
            pytest.skip(f"cannot install harbor from PyPI: {install.stderr.strip().splitlines()[-1:]}")
    return venv / "bin" / "harbor"


LOAD_WITH_HARBOR = """
import sys
from harbor.models.task.task import Task

task = Task(task_dir=sys.argv[1])
print(task.name, task.config.verifier.timeout_sec, task.config.agent.timeout_sec, task.config.environment.cpus)
print(task.instruction.strip())
print(task.config.environment.network_mode.value)
"""


OFFLINE_HARBOR = {"HARBOR_TELEMETRY": "0", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
"""Harbor's telemetry (PostHog) and LiteLLM's model price list (GitHub) are what it reaches out for."""


def harbor_run(harbor: Path, task: Path, agent: str, jobs: Path, env: dict[str, str]) -> list[str]:
    """``harbor run`` of ``task`` with ``agent`` on Harbor's docker backend; the rewards its verifier wrote.
    Harbor runs in a network namespace of its own where bubblewrap is installed (it needs only the
    engine's unix socket), so it reaches no address but loopback."""
    argv = [str(harbor), "run", "-p", str(task), "-a", agent, "-o", str(jobs), "-y"]
    if shutil.which("bwrap"):
        argv = ["bwrap", "--dev-bind", "/", "/", "--unshare-net", "--", *argv]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return [path.read_text().strip() for path in sorted(jobs.rglob("verifier/reward.txt"))]


@pytest.mark.harbor
@pytest.mark.docker
def test_exported_task_runs_under_harbor(
    tmp_path: Path, make_task: Callable[..., Path], harbor_bin: Path, engine: Engine
) -> None:
    """The export runs under ``harbor run`` itself: the oracle's reward is 1 and nop's is 0. It is exported
    with ``--offline-docker`` (no network from its compose file alone: Harbor's own no-network policy needs
    an egress-control sidecar image pulled from Docker Hub), on our engine, with no pull and no network."""
    task = make_task(tmp_path / "ours" / "calc")
    exported = tmp_path / "calc"
    oneshot("harbor", "export", "--offline-docker", task, exported)
    env = {**os.environ, **OFFLINE_HARBOR, "DOCKER_HOST": engine.host}
    load = [str(harbor_bin.parent / "python"), "-c", LOAD_WITH_HARBOR, str(exported)]
    loaded = subprocess.run(load, capture_output=True, text=True, env=env)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.splitlines() == ["calc 60.0 60.0 1", "calc.add subtracts instead of adding; fix it.", "public"]
    compose = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, env=env)
    if compose.returncode != 0 or " v2." not in compose.stdout:
        said = (compose.stderr.strip() or compose.stdout.strip() or "no output").splitlines()[0][:80]
        pytest.skip(
            "the task loads in Harbor's own model; `harbor run` needs the `docker compose` v2 plugin, which is not "
            f"installed here (`docker compose version`: {said}; scripts/install-deps installs it)"
        )
    compose_file = exported / "environment" / "docker-compose.yaml"  # Harbor merges it over its own
    config = subprocess.run(
        ["docker", "compose", "-f", str(compose_file), "config", "--format", "json"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    main = json.loads(config.stdout)["services"]["main"]
    assert main["network_mode"] == "none" and main["build"]["network"] == "none", main
    assert harbor_run(harbor_bin, exported, "oracle", tmp_path / "oracle", env) == ["1"]
    assert harbor_run(harbor_bin, exported, "nop", tmp_path / "nop", env) == ["0"]
