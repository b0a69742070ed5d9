"""The agent's change as the harness reads it: from a tar of the files, never from the repo's git."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pytest_oneshot.change import (
    Change,
    Entry,
    Tree,
    compute_change,
    ignored_by_start,
    read_archive,
    read_host_dir,
    read_upper,
    render_patch,
)


def _archive(root: Path, **kwargs: object) -> Tree:
    """Read ``root`` the way the local sandbox streams a workspace (host tar, symlinks kept)."""
    proc = subprocess.Popen(["tar", "-C", str(root), "-cf", "-", "."], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        return read_archive(proc.stdout, **kwargs)  # type: ignore[arg-type]
    finally:
        proc.stdout.close()
        proc.wait()


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)}
    argv = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def start(tmp_path: Path) -> Path:
    """A small repo at its start commit."""
    repo = tmp_path / "start"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (repo / "run.sh").write_text("#!/bin/sh\n")
    (repo / "old.txt").write_text("to be deleted\n")
    (repo / "link").symlink_to("src/calc.py")
    (repo / ".gitignore").write_text("build/\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "start")
    return repo


def _agent_copy(start: Path, tmp_path: Path) -> Path:
    agent = tmp_path / "agent"
    subprocess.run(["cp", "-a", str(start), str(agent)], check=True)
    return agent


def _change(start: Path, agent: Path, **kwargs: object) -> Change:
    fresh = _archive(start).files
    return compute_change(fresh, _archive(agent, baseline=fresh, **kwargs), start)


def test_edits_additions_deletions_modes_and_symlinks_are_seen(start: Path, tmp_path: Path) -> None:
    agent = _agent_copy(start, tmp_path)
    (agent / "src" / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (agent / "src" / "new.py").write_text("NEW = 1\n")
    (agent / "old.txt").unlink()
    (agent / "run.sh").chmod(0o755)
    (agent / "link").unlink()
    (agent / "link").symlink_to("src/new.py")
    change = _change(start, agent)
    assert sorted(change.files) == ["link", "run.sh", "src/calc.py", "src/new.py"]
    assert change.deleted == ("old.txt",)
    assert change.files["run.sh"].executable
    assert change.files["link"].kind == "symlink" and change.files["link"].target == "src/new.py"
    assert change.files["src/calc.py"].data == b"def add(a, b):\n    return a + b\n"


def test_nothing_the_agent_does_to_git_hides_a_file(start: Path, tmp_path: Path) -> None:
    agent = _agent_copy(start, tmp_path)
    (agent / "conftest.py").write_text("# forged\n")
    (agent / "tests").mkdir()
    (agent / "tests" / "conftest.py").write_text("# forged\n")
    (agent / ".gitignore").write_text("conftest.py\ntests/\n")  # the agent's ignore rules are not read
    (agent / ".git" / "info" / "exclude").write_text("*\n")
    _git(agent, "config", "core.excludesFile", str(agent / ".git" / "info" / "exclude"))
    (agent / ".gitattributes").write_text("* -diff filter=hide\n")
    _git(agent, "add", "-f", "conftest.py", ".gitignore", ".gitattributes")
    _git(agent, "commit", "-qm", "hide it")  # moves HEAD: nothing looks changed to the repo's git
    _git(agent, "update-index", "--assume-unchanged", "conftest.py")
    assert _git(agent, "status", "--porcelain") == ""
    change = _change(start, agent)
    assert {"conftest.py", "tests/conftest.py", ".gitignore", ".gitattributes"} <= set(change.files)
    patch = render_patch(change, _fresh_side(start, change))
    assert b"+# forged" in patch  # attributes did not turn the diff binary or filter it


def _fresh_side(start: Path, change: Change) -> dict[str, Entry]:
    """What the harness reads for the fresh side of a patch: the start's content of changed paths."""
    fresh = _archive(start).files
    return {
        path: Entry(entry.kind, entry.digest, entry.executable, entry.target,
                    None if entry.kind == "symlink" else (start / path).read_bytes())
        for path, entry in fresh.items()
        if path in change.paths
    }  # fmt: skip


def test_git_dirs_bytecode_and_tool_caches_are_never_files_of_the_repo(start: Path, tmp_path: Path) -> None:
    agent = _agent_copy(start, tmp_path)
    for path in ("sub/.git/config", "src/__pycache__/calc.cpython-311.pyc", "calc.pyc", ".pytest_cache/v/x",
                 "src/calc.egg-info/entry_points.txt", ".venv/bin/python"):  # fmt: skip
        (agent / path).parent.mkdir(parents=True, exist_ok=True)
        (agent / path).write_text("x\n")
    assert _change(start, agent).paths == []


def test_new_files_the_start_commit_ignores_are_left_out(start: Path, tmp_path: Path) -> None:
    agent = _agent_copy(start, tmp_path)
    (agent / "build").mkdir()
    (agent / "build" / "out.py").write_text("x = 1\n")
    assert _change(start, agent).paths == []


def test_a_dir_made_of_a_start_symlink_or_submodule_is_a_change_not_a_git_error(start: Path, tmp_path: Path) -> None:
    """git refuses to check a path below a symlink or submodule of the start commit: an agent that
    turns one into a dir of new files has changed them, it has not broken the harness."""
    submodule = tmp_path / "sub"
    submodule.mkdir()
    _git(submodule, "init", "-q")
    _git(submodule, "commit", "-q", "--allow-empty", "-m", "sub")
    gitlink = f"160000,{_git(submodule, 'rev-parse', 'HEAD').strip()},vendor"
    _git(start, "update-index", "--add", "--cacheinfo", gitlink)
    _git(start, "commit", "-qm", "a submodule")
    (start / "vendor").mkdir()  # as a checkout leaves a submodule it did not clone
    agent = _agent_copy(start, tmp_path)
    (agent / "link").unlink()
    for path in ("link/new.py", "vendor/new.py", "build/out.py"):
        (agent / path).parent.mkdir(exist_ok=True)
        (agent / path).write_text("x = 1\n")
    change = _change(start, agent)
    assert list(change.files) == ["link/new.py", "vendor/new.py"] and change.deleted == ("link",)


def test_ignore_rules_that_cannot_be_read_are_an_error_not_none(tmp_path: Path) -> None:
    """A start whose ignore rules git cannot read (here: no repository at all) must not pass every new
    file as not ignored."""
    (tmp_path / "not-a-repo").mkdir()
    with pytest.raises(RuntimeError, match="check-ignore"):
        ignored_by_start(tmp_path / "not-a-repo", ["build/out.py"])


def test_big_and_special_files_are_left_out_and_named(start: Path, tmp_path: Path) -> None:
    agent = _agent_copy(start, tmp_path)
    (agent / "big.bin").write_bytes(b"x" * 5000)
    os.mkfifo(agent / "fifo")
    (agent / "ok.txt").write_text("fine\n")
    change = _change(start, agent, max_file_bytes=4096)
    assert list(change.files) == ["ok.txt"]
    assert "cap" in change.left_out["big.bin"]
    assert change.left_out["fifo"] == "not a regular file or symlink"


def _nest(top: Path, depth: int, name: str = "d" * 200, file: str = "f.txt") -> None:
    """``top/ddd.../ddd.../f.txt``, each dir made from its parent's (a path too long for one syscall)."""
    top.mkdir()
    parent = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir(name, dir_fd=parent)
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=parent)
        os.close(parent)
        parent = child
    with open(os.open(file, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=parent), "wb") as written:
        written.write(b"deep\n")
    os.close(parent)


def test_a_tree_deeper_than_a_host_path_is_read_with_its_deep_part_left_out(start: Path, tmp_path: Path) -> None:
    """A runaway copy nests dirs deeper than a host path can name: read from this host's files (a docker
    tree's upper dir), the rest of the change is read and the deep part is left out, as from an archive."""
    agent = _agent_copy(start, tmp_path)
    (agent / "src" / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    _nest(agent / "out", 25)
    fresh = read_host_dir(start).files
    archived = _archive(agent, baseline=fresh)
    for tree in (read_upper(agent, fresh), read_host_dir(agent)):
        assert tree.files.keys() == archived.files.keys()
        assert tree.left_out == archived.left_out
        assert list(tree.left_out) == ["out/" + "d" * 196 + "..."]
    assert list(compute_change(fresh, read_upper(agent, fresh)).files) == ["src/calc.py"]


def test_a_dir_too_long_for_a_host_path_in_bytes_is_left_out(start: Path, tmp_path: Path) -> None:
    """Names of 4-byte characters make a path this host cannot name within the 1024-character cap (here
    a file of 1022 characters, over 4096 bytes with the host's part): the deep dir is left out, saying
    so, and the rest of the change is read."""
    agent = _agent_copy(start, tmp_path)
    (agent / "src" / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    _nest(agent / "out", 16, "\N{GRINNING FACE}" * 62, file="\N{GRINNING FACE}" * 10)
    fresh = read_host_dir(start).files
    for tree in (read_upper(agent, fresh), read_host_dir(agent)):
        ((deep, why),) = tree.left_out.items()
        assert deep.startswith("out/\N{GRINNING FACE}") and len(deep) <= 1024 and "too deep" in why
    assert list(compute_change(fresh, read_upper(agent, fresh)).files) == ["src/calc.py"]


def test_the_change_has_a_total_cap(start: Path, tmp_path: Path) -> None:
    agent = _agent_copy(start, tmp_path)
    for index in range(4):
        (agent / f"part{index}.bin").write_bytes(bytes([index]) * 3000)
    change = _change(start, agent, max_change_bytes=7000)
    assert len(change.files) == 2 and len(change.left_out) == 2


def test_the_patch_applies_to_the_start_and_gives_the_agents_tree(start: Path, tmp_path: Path) -> None:
    agent = _agent_copy(start, tmp_path)
    (agent / "src" / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (agent / "data.bin").write_bytes(bytes(range(256)))
    (agent / "old.txt").unlink()
    change = _change(start, agent)
    patch = render_patch(change, _fresh_side(start, change))
    check = tmp_path / "check"
    subprocess.run(["git", "clone", "-q", str(start), str(check)], check=True)
    subprocess.run(["git", "apply", "--binary", "-"], input=patch, cwd=check, check=True)
    assert (check / "src" / "calc.py").read_text() == (agent / "src" / "calc.py").read_text()
    assert (check / "data.bin").read_bytes() == bytes(range(256))
    assert not (check / "old.txt").exists()
