"""Repo snapshots fail with messages a task author can act on."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_oneshot.errors import InfraError, RepoUnavailableError
from pytest_oneshot.repo import _is_local_path, snapshot
from pytest_oneshot.task import load_task


def test_a_git_url_that_is_a_missing_local_path_says_so(make_task: Callable[..., Path], tmp_path: Path) -> None:
    gone = tmp_path / "no-such-repo"
    task = load_task(make_task(tmp_path / "t", repo={"bundle": None, "git_url": str(gone)}))
    with pytest.raises(RepoUnavailableError) as excinfo:
        snapshot(task, tmp_path / "cache")
    assert str(excinfo.value) == f"prepare: repository unreachable: repo.git_url {gone}: local path does not exist"


@pytest.mark.parametrize(
    ("url", "local"),
    [("/srv/r.git", True), ("../r", True), ("r", True), ("./a:b", True), ("https://h/r.git", False),
     ("git@host:r.git", False), ("file:///srv/r.git", False)],
)  # fmt: skip
def test_local_paths_are_told_from_urls_as_git_does(url: str, local: bool) -> None:
    assert _is_local_path(url) is local


def test_a_git_failure_while_building_the_snapshot_is_an_item_error(
    make_task: Callable[..., Path], tmp_path: Path
) -> None:
    """A Task built in code skips tb_meta.json's validation; git's refusal must still not be a crash."""
    task = load_task(make_task(tmp_path / "t"))
    bad = dataclasses.replace(task, spec=task.spec.model_copy(update={"repo": task.spec.repo.model_copy(
        update={"branch": "bad..name"})}))  # fmt: skip
    with pytest.raises(InfraError) as excinfo:
        snapshot(bad, tmp_path / "cache")
    assert str(excinfo.value).startswith(f"prepare: {task.paths.meta}: could not build the repo snapshot: ")
    assert not any((tmp_path / "cache" / "repos").iterdir()), "the failed build leaves nothing behind"
