"""The local sandbox on its own: clean env, isolation, timeouts, safe writes."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_oneshot.repo import snapshot
from pytest_oneshot.sandbox import SandboxSpec
from pytest_oneshot.sandbox.local import LocalSandbox
from pytest_oneshot.task import load_task

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (apt-get install bubblewrap)")


@pytest.fixture
def sandbox(make_task: Callable[..., Path], tmp_path: Path) -> Iterator[LocalSandbox]:
    task = load_task(make_task(tmp_path / "task"))
    box = LocalSandbox(SandboxSpec(task=task, repo_snapshot=snapshot(task), trial_id="t", run_id="r"))
    box.start()
    yield box
    box.stop()


def test_workspace_is_the_start_commit_with_no_remote(sandbox: LocalSandbox) -> None:
    assert sandbox.read_file("calc/__init__.py") == b"def add(a, b):\n    return a - b\n"
    assert sandbox.exec(["git", "remote"]).stdout == b""
    assert sandbox.exec(["git", "rev-list", "--count", "HEAD"]).stdout.strip() == b"1"


def test_host_environment_is_not_inherited(sandbox: LocalSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-local")
    out = sandbox.exec(["env"], env={"EXTRA": "1"}).stdout.decode()
    assert "sk-canary-local" not in out
    assert "EXTRA=1" in out and "ONESHOT_IN_SANDBOX=1" in out


def test_timeout_kills_the_whole_tree_and_keeps_output(sandbox: LocalSandbox, tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    result = sandbox.exec(
        ["bash", "-c", "echo before; (sleep 60; echo escaped > escaped.txt) & sleep 60"], timeout=1, output=log
    )
    assert result.timed_out and not result.ok
    assert log.read_text() == "before\n"
    assert sandbox.exec(["bash", "-c", "sleep 2; test ! -e escaped.txt"]).ok


def test_write_file_replaces_a_planted_symlink(sandbox: LocalSandbox, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("host file")
    sandbox.exec(["bash", "-c", f"mkdir -p tests && ln -sf {outside} tests/test_calc.py && ln -s /tmp linkdir"])
    sandbox.write_file("tests/test_calc.py", b"hidden")
    sandbox.write_file("linkdir/x.py", b"hidden")
    assert outside.read_text() == "host file"
    assert sandbox.read_file("tests/test_calc.py") == b"hidden"
    assert sandbox.exec(["test", "-d", "linkdir", "-a", "!", "-L", "linkdir"]).ok
    with pytest.raises(PermissionError):
        sandbox.write_file("../escape.txt", b"x")


@needs_bwrap
def test_no_network_unless_asked(sandbox: LocalSandbox) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)"
        assert not sandbox.exec(["python", "-c", probe], timeout=20).ok


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
        assert not box.exec(["test", "-e", str(task.paths.meta)]).ok
        assert not box.exec(["test", "-e", str(tmp_path / "task" / "diff.patch")]).ok
    finally:
        box.stop()


@needs_bwrap
def test_our_packages_import_inside_so_pytest_can_autoload_the_plugin(sandbox: LocalSandbox) -> None:
    result = sandbox.exec(
        ["python", "-c", "import pytest_oneshot.plugin, oneshot_shared.wire, proxy.cleaner, mcp_server"]
    )
    assert result.ok, result.text()
    assert not sandbox.exec(["test", "-e", str(Path(__file__).resolve().parent.parent.parent / "tasks")]).ok


def test_without_bubblewrap_it_warns_once_and_still_runs(
    make_task: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_oneshot.sandbox import local

    local.bubblewrap.cache_clear()
    monkeypatch.setattr(local.shutil, "which", lambda name: None)
    task = load_task(make_task(tmp_path / "task"))
    spec = SandboxSpec(task=task, repo_snapshot=snapshot(task), trial_id="t", run_id="r")
    try:
        with pytest.warns(local.IsolationWarning, match="apt-get install bubblewrap"):
            box = LocalSandbox(spec)
        box.start()
        assert box.exec(["git", "rev-parse", "--show-toplevel"]).stdout.decode().strip() == box.workdir
        assert box.read_file("calc/__init__.py").startswith(b"def add")
        box.stop()
    finally:
        local.bubblewrap.cache_clear()


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
