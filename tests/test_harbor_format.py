"""Harbor's task format without a sandbox: the WORKDIR rule, what an import writes, one-line errors for
what a Harbor task lacks, and what an export writes (read back with tomllib)."""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_oneshot.errors import TaskFormatError
from pytest_oneshot.harbor import dockerfile_workdir, export_task, import_task, is_harbor_task
from pytest_oneshot.task import load_task

HARBOR_TASK = Path(__file__).resolve().parent / "fixtures" / "harbor_tasks" / "fix-greeting"


@pytest.mark.parametrize(
    ("dockerfile", "workdir"),
    [
        ("FROM x\nWORKDIR /app\n", "/app"),
        ("FROM x\nWORKDIR /srv\nworkdir project\n", "/srv/project"),
        ('FROM x\nWORKDIR "/opt/my app"\n', "/opt/my app"),
        ('FROM x\nWORKDIR ["/data"]\n', "/data"),
    ],
)
def test_workdir_is_the_last_one(dockerfile: str, workdir: str) -> None:
    assert dockerfile_workdir(dockerfile, "Dockerfile") == workdir


@pytest.mark.parametrize("dockerfile", ["FROM x\n", "FROM x\nWORKDIR /\n", "FROM x\nWORKDIR /usr\n", "WORKDIR $HOME\n"])
def test_workdir_must_be_the_tasks_own(dockerfile: str) -> None:
    with pytest.raises(TaskFormatError, match=r"^Dockerfile: WORKDIR: must name the task's own directory"):
        dockerfile_workdir(dockerfile, "Dockerfile")


def test_import_writes_a_reward_mode_task(tmp_path: Path) -> None:
    assert is_harbor_task(HARBOR_TASK)
    task = load_task(import_task(HARBOR_TASK, tmp_path / "fix-greeting"))
    spec = task.spec
    assert (spec.tests.mode, spec.tests.command, spec.tests.report) == (
        "reward", "bash /tests/test.sh", "/logs/verifier/reward.txt",
    )  # fmt: skip
    assert spec.tests.infrastructure == [".harbor"]
    assert sorted(task.hidden_files()) == [".harbor/tests/expected.txt", ".harbor/tests/test.sh"]
    assert task.instructions.startswith("`/app/greet.py` prints")
    assert (spec.limits.agent_timeout_sec, spec.environment.memory_mb, spec.metadata.tags) == (
        60,
        1024,
        ["bugfix", "harbor"],
    )
    assert task.docker_context() == {"greet.py": b'print("Helo, world!")\n'}
    assert (task.paths.solution_dir / "solve.sh").is_file() and task.paths.solution_dir in task.paths.hidden


@pytest.mark.parametrize(
    ("remove", "message"),
    [("tests/test.sh", "tests/test.sh: file not found"), ("environment/Dockerfile", "Dockerfile: file not found")],
)
def test_import_names_what_is_missing(tmp_path: Path, remove: str, message: str) -> None:
    src = tmp_path / "src"
    shutil.copytree(HARBOR_TASK, src)
    (src / remove).unlink()
    with pytest.raises(TaskFormatError, match=message):
        import_task(src, tmp_path / "dest")


def test_import_names_bad_toml_fields(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(HARBOR_TASK, src)
    (src / "task.toml").write_text("[agent]\ntimeout_sec = -1\n")
    with pytest.raises(TaskFormatError, match=r"agent.timeout_sec: must be a number > 0 \(got -1\)"):
        import_task(src, tmp_path / "dest")
    (src / "task.toml").write_text("[agent\n")
    with pytest.raises(TaskFormatError, match=r"task\.toml: not valid TOML"):
        import_task(src, tmp_path / "dest2")


def test_export_writes_harbors_layout(tmp_path: Path, make_task: Callable[..., Path]) -> None:
    task = load_task(make_task(tmp_path / "calc"))
    out = export_task(task, tmp_path / "harbor" / "calc", "oneshot-base:bookworm")
    config = tomllib.loads((out / "task.toml").read_text())
    assert config["verifier"]["timeout_sec"] == 60 and config["environment"]["allow_internet"] is False
    assert (out / "instruction.md").read_text() == task.instructions
    assert (out / "environment" / "repo" / "calc" / "__init__.py").read_text().endswith("return a - b\n")
    assert "git apply" in (out / "solution" / "solve.sh").read_text()
    assert "+    return a + b" in (out / "solution" / "solve.sh").read_text()
    test_sh = (out / "tests" / "test.sh").read_text()
    assert "tests/test_calc.py::test_add tests/test_calc.py::test_zero" in test_sh
    assert "/logs/verifier/reward.txt" in test_sh
    assert (out / "tests" / "hidden" / "tests" / "test_calc.py").is_file()
    dockerfile = (out / "environment" / "Dockerfile").read_text()
    assert dockerfile.startswith("FROM oneshot-base:bookworm\n") and dockerfile.rstrip().endswith("WORKDIR /app")
    assert config["metadata"]["tags"] == ["bugfix"]
    compose = (out / "environment" / "docker-compose.yaml").read_text()
    assert "  main:\n    network_mode: none\n    build:\n      network: none\n" in compose


def test_export_network_settings(tmp_path: Path, make_task: Callable[..., Path]) -> None:
    """No network: task.toml says so unless --offline-docker, which leaves it to the compose file alone;
    a task with network (loopback) gets neither; a build that needs a network keeps Harbor's default."""
    task = load_task(make_task(tmp_path / "calc"))
    out = export_task(task, tmp_path / "offline" / "calc", "oneshot-base:bookworm", offline_docker=True)
    assert tomllib.loads((out / "task.toml").read_text())["environment"]["allow_internet"] is True
    assert "network_mode: none" in (out / "environment" / "docker-compose.yaml").read_text()
    loopback = load_task(make_task(tmp_path / "loopback", environment={"network": "loopback"}))
    out = export_task(loopback, tmp_path / "harbor" / "loopback", "oneshot-base:bookworm")
    assert tomllib.loads((out / "task.toml").read_text())["environment"]["allow_internet"] is True
    assert not (out / "environment" / "docker-compose.yaml").exists()
    pip = load_task(make_task(tmp_path / "pip", environment={"pip": ["-e", "."]}))
    compose = (export_task(pip, tmp_path / "harbor" / "pip", "x") / "environment" / "docker-compose.yaml").read_text()
    assert "network_mode: none" in compose and "build:" not in compose
