"""The local sandbox on its own: what bubblewrap hides, the plugin inside, the fallback without it,
and its stale-dir cleanup (the Sandbox contract itself is tests/contract/test_sandbox_contract.py)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_oneshot.change import compute_change, read_archive, read_host_dir
from pytest_oneshot.repo import snapshot
from pytest_oneshot.sandbox import SandboxSpec, local
from pytest_oneshot.sandbox.local import LocalSandbox
from pytest_oneshot.task import load_task
from tests.workspace_edits import AGENT_EDITS, EDITED_FILES, assert_the_edits_are_the_change

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (apt-get install bubblewrap)")


@pytest.fixture
def sandbox(make_task: Callable[..., Path], tmp_path: Path) -> Iterator[LocalSandbox]:
    task = load_task(make_task(tmp_path / "task"))
    box = LocalSandbox(SandboxSpec(task=task, repo_snapshot=snapshot(task), trial_id="t", run_id="r"))
    box.start()
    yield box
    box.stop()


@needs_bwrap
def test_host_tree_is_invisible_but_python_from_a_tmp_venv_runs(
    make_task: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "venv"  # under /tmp, which the sandbox mounts a private tmpfs over
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    monkeypatch.setattr(sys, "executable", str(venv / "bin" / "python"))
    monkeypatch.setattr(sys, "prefix", str(venv))
    task = load_task(make_task(tmp_path / "task"))
    box = LocalSandbox(SandboxSpec(task=task, repo_snapshot=snapshot(task), trial_id="t", run_id="r"))
    try:
        box.start()
        assert box.exec(["python", "-c", "import sys; print(sys.prefix)"]).stdout.decode().strip() == str(venv)
        for hidden in (task.paths.meta, tmp_path / "task" / "diff.patch"):
            seen = box.exec(["test", "-e", str(hidden)])
            assert (seen.returncode, seen.stderr) == (1, b""), seen.text()  # `test` ran, and found nothing
    finally:
        box.stop()


@needs_bwrap
def test_our_packages_import_inside_so_pytest_can_autoload_the_plugin(sandbox: LocalSandbox) -> None:
    result = sandbox.exec(
        ["python", "-c", "import pytest_oneshot.plugin, oneshot_shared.wire, proxy.cleaner, mcp_server"]
    )
    assert result.ok, result.text()
    tasks = sandbox.exec(["test", "-e", str(Path(__file__).resolve().parent.parent.parent / "tasks")])
    assert (tasks.returncode, tasks.stderr) == (1, b""), tasks.text()  # `test` ran, and found nothing


def test_without_bubblewrap_it_warns_once_and_still_runs(
    make_task: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_oneshot.sandbox import bwrap

    bwrap.bubblewrap.cache_clear()
    monkeypatch.setattr(bwrap.shutil, "which", lambda name: None)
    task = load_task(make_task(tmp_path / "task"))
    spec = SandboxSpec(task=task, repo_snapshot=snapshot(task), trial_id="t", run_id="r")
    try:
        with pytest.warns(bwrap.IsolationWarning, match="apt-get install bubblewrap"):
            box = LocalSandbox(spec)
        box.start()
        assert box.exec(["git", "rev-parse", "--show-toplevel"]).stdout.decode().strip() == box.workdir
        assert box.read_file("calc/__init__.py").startswith(b"def add")
        box.stop()
    finally:
        bwrap.bubblewrap.cache_clear()


def test_cleanup_stale_removes_only_dirs_of_dead_owners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import tempfile

    from pytest_oneshot.owner import OWNER_FILE, Owner

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    me = Owner.current()
    dirs = {name: tmp_path / f"oneshot-{name}" for name in ("live", "dead", "unowned", "garbled")}
    for path in dirs.values():
        path.mkdir()
        (path / "workspace").mkdir()
    Owner.claim(dirs["live"])
    (dirs["dead"] / OWNER_FILE).write_text(json.dumps(Owner(me.host, me.boot, me.pid, "1").labels()))
    (dirs["garbled"] / OWNER_FILE).write_text("{not json")
    assert LocalSandbox.cleanup_stale({}) == [str(dirs["dead"])]
    assert [name for name, path in dirs.items() if path.exists()] == ["live", "unowned", "garbled"]


@needs_bwrap
def test_the_agents_files_are_read_on_this_host_as_from_an_archive(
    make_task: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under bubblewrap the workspace is read from this host's files (no tar), to the tree an archive
    gives, for every kind of edit; without bubblewrap, where the agent's code could mount something on
    its workspace, it is read through an archive as before."""
    task = load_task(make_task(tmp_path / "task", files=EDITED_FILES))
    spec = SandboxSpec(task=task, repo_snapshot=snapshot(task), trial_id="edits", run_id="r")
    scoring, agent = LocalSandbox(dataclasses.replace(spec, trial_id="fresh", scoring=True)), LocalSandbox(spec)
    try:
        for box in (scoring, agent):
            box.start()
        with scoring.archive_workspace() as archive:
            fresh = read_archive(archive).files
        files = scoring.host_files()
        assert files is not None and files.upper is None and read_host_dir(files.root).files == fresh
        edited = agent.exec(["sh", "-c", AGENT_EDITS])
        assert edited.ok, edited.text()
        files = agent.host_files(stop_processes=True)
        assert files is not None
        via_host = read_host_dir(files.root, baseline=fresh, max_file_bytes=2000)
        with agent.archive_workspace() as archive:
            via_archive = read_archive(archive, baseline=fresh, max_file_bytes=2000)
        assert via_host.files == via_archive.files and via_host.left_out == via_archive.left_out
        assert_the_edits_are_the_change(compute_change(fresh, via_host))
    finally:
        scoring.stop()
        agent.stop()
    monkeypatch.setattr(local, "bubblewrap", lambda: None)  # as on a host without it
    plain = LocalSandbox(spec)
    try:
        assert plain.host_files() is None
    finally:
        plain.stop()  # its temp dir, made by the constructor
