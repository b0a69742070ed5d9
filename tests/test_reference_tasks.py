"""The original's created-form tasks collect, and fail at run time with a clear reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def test_created_form_tasks_collect_and_error_with_repository_unreachable(
    pytester: pytest.Pytester, reference_tasks: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for task_dir in reference_tasks:
        shutil.copytree(task_dir, pytester.path / "tasks" / task_dir.name)
    # Their repo is on github.com: route git through a dead loopback proxy so the attempt
    # fails at once and no packet leaves the machine.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    result = pytester.runpytest_subprocess("tasks", "--oneshot-agent=nop", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=6)
    result.stdout.fnmatch_lines(["*ERROR at setup of oneshot task add-hello-world-to-readme_20250823_121259*"])
    reasons = [line for line in result.stdout.lines if line.startswith("prepare: repository unreachable: ")]
    assert len(reasons) == 6, result.stdout.str()
    assert all("synth-laboratories/OneShot" in line for line in reasons)
    assert "Traceback" not in result.stdout.str()
