"""The backends the sandbox contract suite runs on, each with its declared gaps, and how to open one.

- ``local``: the local sandbox under bubblewrap;
- ``local-nobwrap``: the local sandbox where bubblewrap is missing (plain subprocesses);
- ``docker-execd``: the docker sandbox, commands through its in-container exec server;
- ``docker-exec``: the docker sandbox on an image without python3, commands through the engine's exec;
- ``docker-tree``: the docker backend's scoring sandbox, the image's layers mounted under bubblewrap;
- ``modal-double``: the modal sandbox against ``tests/fixtures/fake_modal``, a test double of Modal's
  cloud whose Sandboxes are containers of the private engine (its client surface is checked against
  the real ``modal`` package in ``tests/sandbox/test_modal.py``);
- ``third-party``: ``tests/fixtures/third_party_sandbox``, pip-installed in this session and loaded
  from the ``pytest_oneshot.sandboxes`` entry point by the sandbox registry, as a plugin would be.
"""

from __future__ import annotations

import dataclasses
import importlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.repo import snapshot
from pytest_oneshot.sandbox import Sandbox, SandboxFactory, SandboxSpec, bwrap, default_sandbox_registry, local
from pytest_oneshot.sandbox.docker import DockerSandbox
from pytest_oneshot.sandbox.docker_tree import ImageTreeSandbox, docker_sandbox
from pytest_oneshot.sandbox.modal import CLIENT_ENV, ModalSandbox
from pytest_oneshot.task import load_task

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
THIRD_PARTY = FIXTURES / "third_party_sandbox"
NO_PYTHON = "FROM oneshot-base:bookworm\nRUN rm -f /usr/bin/python3*\n"
"""An image whose python3 cannot run the exec server: the docker sandbox uses the engine's exec."""

_NO_LIMITS = "the local sandbox applies no CPU or memory limits (use --oneshot-sandbox=docker)"
_NO_ISOLATION = "without bubblewrap the local sandbox has no isolation (it warns)"
KNOWN_GAPS: dict[str, dict[str, str]] = {
    "local": {"limits": _NO_LIMITS},
    "local-nobwrap": {
        "limits": _NO_LIMITS,
        "network": f"{_NO_ISOLATION}: the host's network",
        "mounts": f"{_NO_ISOLATION}: no mount namespace, a mount is reached only as an argument naming it",
        "privileges": f"{_NO_ISOLATION}: commands have the harness's own privileges",
    },
    "docker-execd": {},
    "docker-exec": {},
    "docker-tree": {
        "mounts": "a scoring sandbox takes no mounts (the agent never runs there): given some, it is a container"
    },
    "third-party": {"limits": f"it wraps the local sandbox: {_NO_LIMITS}"},
    "modal-double": {
        "loopback": "Modal's cloud cannot reach this machine's loopback: with network='loopback' a modal sandbox "
        "reaches only its model route's host (the trial's gateway sidecar), and without a route it refuses to start"
    },
}
"""Per backend, the promises it does not keep, and why: those tests skip with the reason."""


@dataclass
class Backend:
    name: str
    factory: SandboxFactory
    meta: dict[str, Any] = field(default_factory=dict)
    """tb_meta.json overrides of the contract task (e.g. an environment.dockerfile)."""
    dockerfile: str | None = None
    check: Callable[[Sandbox], None] = lambda sandbox: None
    """Run once the sandbox started: that it is the backend it claims to be."""
    options: dict[str, str] = field(default_factory=dict)
    """``SandboxSpec.options`` of its sandboxes."""

    def gap(self, promise: str) -> None:
        """Skip the calling test when this backend declares ``promise`` a known gap."""
        reason = KNOWN_GAPS[self.name].get(promise)
        if reason:
            pytest.skip(f"{self.name}: known gap: {reason}")


def _uses_server(expected: bool) -> Callable[[Sandbox], None]:
    def check(sandbox: Sandbox) -> None:
        assert isinstance(sandbox, DockerSandbox) and sandbox.uses_server is expected

    return check


@pytest.fixture(scope="session")
def third_party_factory(tmp_path_factory: pytest.TempPathFactory) -> SandboxFactory:
    """Install the third-party package (offline, from a copy: the build writes into its tree) and load
    it the way a session does: the registry reads the entry point."""
    source = shutil.copytree(THIRD_PARTY, tmp_path_factory.mktemp("third-party-src") / "pkg")
    target = tmp_path_factory.mktemp("third-party-site")
    argv = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", "--no-deps"]
    subprocess.run([*argv, "--target", str(target), str(source)], check=True, capture_output=True)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    registry = default_sandbox_registry()
    assert "wrapped" in registry.names(), registry.names()
    return registry.get("wrapped")


class _ScoringFactory:
    """The docker backend's factory, asked for scoring sandboxes."""

    def __call__(self, spec: SandboxSpec) -> Sandbox:
        return docker_sandbox(dataclasses.replace(spec, scoring=True))

    cleanup_stale = staticmethod(docker_sandbox.cleanup_stale)


def _is_tree(sandbox: Sandbox) -> None:
    assert isinstance(sandbox, ImageTreeSandbox) and sandbox.container is None


def use_modal_double(monkeypatch: pytest.MonkeyPatch, home: Path) -> dict[str, str]:
    """Point the modal sandbox at the double (its state in ``home``); return the options its sandboxes need:
    the double's registry is the engine's local images."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.setenv(CLIENT_ENV, "fake_modal")
    monkeypatch.setenv("FAKE_MODAL_HOME", str(home))
    return {"modal_image": "oneshot-base:bookworm", "modal_app": "oneshot-contract"}


def _is_modal(sandbox: Sandbox) -> None:
    assert isinstance(sandbox, ModalSandbox) and sandbox._modal.__name__ == "fake_modal"


BACKENDS = ["local", "local-nobwrap", "docker-execd", "docker-exec", "docker-tree", "modal-double", "third-party"]


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.docker] if name.startswith(("docker", "modal")) else [])
        for name in BACKENDS
    ]
)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Backend:
    name = str(request.param)
    if name in ("local", "third-party") and bwrap.bubblewrap() is None:
        pytest.skip("needs bubblewrap (apt-get install bubblewrap)")
    if name == "local":
        return Backend(name, local.LocalSandbox)
    if name == "local-nobwrap":
        monkeypatch.setattr(local, "bubblewrap", lambda: None)  # as on a host without it (its warning aside)
        return Backend(name, local.LocalSandbox)
    if name == "third-party":
        return Backend(name, request.getfixturevalue("third_party_factory"))
    request.getfixturevalue("engine")  # started, or skipped/failed with the reason
    if name == "modal-double":
        home = request.getfixturevalue("tmp_path_factory").getbasetemp() / "fake-modal"
        return Backend(name, ModalSandbox, check=_is_modal, options=use_modal_double(monkeypatch, home))
    if name == "docker-tree":
        return Backend(name, _ScoringFactory(), check=_is_tree)
    if name == "docker-execd":
        return Backend(name, DockerSandbox, check=_uses_server(True))
    return Backend(name, DockerSandbox, dockerfile=NO_PYTHON, check=_uses_server(False))


OpenSandbox = Callable[..., tuple[Sandbox, SandboxSpec]]


@pytest.fixture
def open_sandbox(
    backend: Backend, make_real_task: Callable[..., Path], tmp_path: Path, request: pytest.FixtureRequest
) -> OpenSandbox:
    """Start a sandbox of ``backend`` on a fresh copy of the contract task (fixed dates: docker reuses
    its image); ``subdir`` makes the repo's ``src`` the workdir; stopped at teardown."""
    opened: list[Sandbox] = []

    def open_(*, subdir: str = "", **spec_kwargs: Any) -> tuple[Sandbox, SandboxSpec]:
        meta: dict[str, Any] = {"repo": {"subdir": subdir}} if subdir else {}
        if backend.dockerfile:
            meta["environment"] = {"dockerfile": "Dockerfile"}
        task_dir = make_real_task(tmp_path / f"task-{len(opened)}", **meta)
        if backend.dockerfile:
            (task_dir / "Dockerfile").write_text(backend.dockerfile)
        task = load_task(task_dir)
        trial = f"contract-{request.node.name}-{len(opened)}"
        spec = SandboxSpec(
            task=task, repo_snapshot=snapshot(task), trial_id=trial, run_id="contract", options=backend.options,
            **spec_kwargs,
        )  # fmt: skip
        sandbox = backend.factory(spec)
        opened.append(sandbox)
        request.addfinalizer(sandbox.stop)
        sandbox.start()
        backend.check(sandbox)
        return sandbox, spec

    return open_


@pytest.fixture
def sandbox(open_sandbox: OpenSandbox) -> Sandbox:
    return open_sandbox()[0]
