"""Task environments (``environment.pip`` / ``system_packages``) in both sandboxes, through the plugin.

A task whose hidden test needs a PyPI package the host lacks, its own pinned pytest and an
editable install of its repo passes with the oracle; the second run reuses the built environment;
a package that does not exist is an item error naming it and the command. The builds are real:
pip reaches PyPI (the one network exception), trusting the host's CA bundle.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from pytest_oneshot.errors import InfraError, TaskFormatError
from pytest_oneshot.sandbox import environment
from pytest_oneshot.sandbox.dockerd import Engine
from pytest_oneshot.sandbox.environment import reads_repo
from pytest_oneshot.task import load_task

PACKAGE = "text-unidecode==1.3"  # tiny, pure Python, and not installed on the host (checked below)
PYTEST_PIN = "8.3.4"  # differs from the host's pytest and from Debian's in the docker base image
MISSING = "oneshot-no-such-package-3f9a1c"

_PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "calc"
version = "0.1.{unique}"

[tool.setuptools]
packages = ["calc"]
"""
_HIDDEN = f"""import importlib.metadata
import shutil

import pytest
from calc import add
from text_unidecode import unidecode


def test_zero():
    assert add(0, 0) == 0


def test_add():
    assert add(2, 3) == 5
    assert unidecode("café") == "cafe"
    assert pytest.__version__ == "{PYTEST_PIN}"
    assert importlib.metadata.version("calc").startswith("0.1.")  # the editable install of the repo
    assert shutil.which("jq")
"""

SANDBOXES = ["local", pytest.param("docker", marks=pytest.mark.docker)]


@pytest.fixture(params=SANDBOXES)
def sandbox(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("engine")  # the engine and base image, or a skip
    return str(request.param)


def _builds(sandbox: str) -> list[list[str]]:
    """Rows (time, name, task, seconds) of the builds log: local venvs, or docker images."""
    log = Path(os.environ["ONESHOT_CACHE_DIR"]) / ("envs" if sandbox == "local" else "docker") / "builds.log"
    return [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []


def _environments(rows: list[list[str]]) -> list[list[str]]:
    """The rows of environments (local venvs have no image prefix; docker ones are oneshot-deps images)."""
    return [row for row in rows if not row[1].startswith("oneshot-env:")]


def _only(run: Any) -> dict[str, Any]:
    (item,) = run.items().values()
    return dict(item)


@pytest.fixture
def env_task(make_task: Callable[..., Path], pytester: pytest.Pytester, request: pytest.FixtureRequest) -> Path:
    """A task needing text-unidecode, pytest 8.3.4, its repo installed editable, and jq (a Debian package)."""
    unique = str(uuid.uuid4().int % 10**9)  # a fresh environment (and docker image) for every test
    task = make_task(
        pytester.path / "tasks" / "env-task",
        files={"pyproject.toml": _PYPROJECT.format(unique=unique)},
        environment={"pip": ["-e", ".", PACKAGE, f"pytest=={PYTEST_PIN}"], "system_packages": ["jq"]},
        limits={"agent_timeout_sec": 60, "tests_timeout_sec": 120},
    )
    (task / "tests" / "test_calc.py").write_text(_HIDDEN)
    return task


@pytest.fixture
def cleanup_images(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Docker images a test built, removed afterwards so the engine does not fill up."""
    tags: list[str] = []
    yield tags
    if tags:
        engine: Engine = request.getfixturevalue("engine")
        for tag in tags:
            with contextlib.suppress(docker.errors.NotFound):
                engine.api.remove_image(tag, force=True)


def test_the_package_is_not_on_the_host() -> None:
    assert importlib.util.find_spec("text_unidecode") is None, "pick another package: the host has this one"


def test_task_runs_in_its_own_environment_built_once(
    sandbox: str, env_task: Path, run_and_parse: Callable[..., Any], cleanup_images: list[str]
) -> None:
    args = [str(env_task.parent), "--oneshot-agent=oracle", f"--oneshot-sandbox={sandbox}"]
    before = len(_builds(sandbox))
    first = run_and_parse(*args)
    built = _builds(sandbox)[before:]
    cleanup_images += [name for _, name, *_ in built if sandbox == "docker"]
    item = _only(first)
    assert item["outcome"] == "passed", item["reason"]
    assert len(_environments(built)) == 1, built
    assert "building environment" in first.result.stderr.str()  # progress shows live, captured or not
    log = (Path(item["run_dir"]) / "tests.log").read_text()
    assert f"pytest-{PYTEST_PIN}" in log  # the task's pinned pytest ran its tests

    second = run_and_parse(*args)
    assert _only(second)["outcome"] == "passed"
    assert _builds(sandbox)[before:] == built  # everything reused, nothing rebuilt
    assert "building environment" not in second.result.stderr.str()


def test_uninstallable_package_is_an_item_error_naming_it(
    sandbox: str, make_task: Callable[..., Path], pytester: pytest.Pytester, run_and_parse: Callable[..., Any]
) -> None:
    task = make_task(pytester.path / "tasks" / "broken-env", environment={"pip": ["freezegun", MISSING]})
    run = run_and_parse(str(task.parent), "--oneshot-agent=oracle", f"--oneshot-sandbox={sandbox}")
    run.result.assert_outcomes(errors=1)
    item = _only(run)
    assert item["outcome"] == "error"
    reason = item["reason"]
    assert reason.startswith("setup: ") and "environment.pip" in reason, reason
    assert f"`pip install freezegun {MISSING} pytest` failed" in reason, reason
    assert f"No matching distribution found for {MISSING}" in reason, reason
    assert "\n" not in reason


def test_missing_system_package_on_the_host_is_named(
    make_task: Callable[..., Path], pytester: pytest.Pytester, run_and_parse: Callable[..., Any]
) -> None:
    task = make_task(
        pytester.path / "tasks" / "needs-deb", environment={"system_packages": ["git", "oneshot-no-such-deb"]}
    )
    run = run_and_parse(str(task.parent), "--oneshot-agent=oracle", "--oneshot-sandbox=local")
    reason = _only(run)["reason"]
    assert "environment.system_packages: not installed on this host: oneshot-no-such-deb " in reason, reason
    assert "git" not in reason.split("host:")[1].split("(")[0]


@pytest.mark.docker
def test_docker_names_an_uninstallable_debian_package(
    engine: Engine, make_task: Callable[..., Path], pytester: pytest.Pytester, run_and_parse: Callable[..., Any]
) -> None:
    task = make_task(pytester.path / "tasks" / "bad-deb", environment={"system_packages": ["oneshot-no-such-deb"]})
    run = run_and_parse(str(task.parent), "--oneshot-agent=oracle", "--oneshot-sandbox=docker")
    reason = _only(run)["reason"]
    assert "environment.system_packages: `apt-get install oneshot-no-such-deb` failed" in reason, reason
    assert "Unable to locate package oneshot-no-such-deb" in reason, reason


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("system_packages", ["Bad Name"], "is not a Debian package name"),
        ("pip", ["hypothesis", ""], "one `pip install` argument"),
        ("pip", "hypothesis", "valid list"),
    ],
)
def test_malformed_environment_names_the_field(
    make_task: Callable[..., Path], tmp_path: Path, field: str, value: Any, problem: str
) -> None:
    task = make_task(tmp_path / "bad", environment={field: value})
    with pytest.raises(TaskFormatError, match=rf"tb_meta.json: environment\.{field}.*{problem}"):
        load_task(task)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["hypothesis>=6", "freezegun", "requests[socks]>=2,<3", "pytest==8.3.4", "--pre"], False),
        (["-e", "."], True),
        ([".[tests]"], True),
        (["-r", "requirements-dev.txt"], True),
        (["vendor/pkg-1.0.tar.gz"], True),
        (["pkg-1.0-py3-none-any.whl"], True),
        (["pkg; python_version < '3.12'"], True),
    ],
)
def test_only_an_install_that_may_read_the_repo_hashes_it(args: list[str], expected: bool) -> None:
    assert reads_repo(args) is expected


def test_a_long_build_shows_elapsed_time_and_its_latest_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment, "HEARTBEAT_SEC", 0.2)
    lines: list[str] = []
    script = "echo Collecting freezegun; sleep 0.7; echo done"
    code, output = environment.run_build(
        ["sh", "-c", script], label="environment abc", log=tmp_path / "b.log", progress=lines.append
    )
    assert (code, output) == (0, "Collecting freezegun\ndone\n")
    assert lines and all(re.fullmatch(r"environment abc: \d+s, Collecting freezegun", line) for line in lines), lines


def test_a_build_past_its_timeout_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment, "HEARTBEAT_SEC", 0.1)
    started = time.monotonic()
    with pytest.raises(InfraError, match=r"setup: environment abc took over 0s"):
        environment.run_build(
            ["sleep", "30"], label="environment abc", log=tmp_path / "b.log", progress=print, timeout=0.3
        )
    assert time.monotonic() - started < 10


def test_build_failure_names_the_failing_step_and_an_untrusted_certificate(
    make_task: Callable[..., Path], tmp_path: Path
) -> None:
    task = load_task(make_task(tmp_path / "t", environment={"pip": ["requests"]}))
    output = (
        "oneshot-step: apt-get install jq\nok\noneshot-step: pip install requests pytest\n"
        "WARNING: Retrying ... [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed\n"
        "ERROR: Could not find a version that satisfies the requirement requests (from versions: none)\n"
    )
    message = str(environment.build_failure(task, output, tmp_path / "b.log"))
    assert "environment.pip: `pip install requests pytest` failed: ERROR: Could not find a version" in message
    assert "TLS certificate verification failed" in message
