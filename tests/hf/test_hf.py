"""Hugging Face datasets end to end against the fake Hub: export -> push -> pull -> pytest, safety checks."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_hub import Blob, FakeHub

from pytest_oneshot.hf.export import export_tasks, read_rows, rows_to_tasks, task_files
from pytest_oneshot.task import load_task

TOKEN = "hf_fake_test_token"
CANARY = "sk-proj-CANARYcanary0123456789abcdefXYZ"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """The fake Hub, and huggingface_hub pointed at it (for subprocesses: the CLI and pytester runs)."""
    server = FakeHub(TOKEN)
    server.start()
    env = {
        "HF_ENDPOINT": server.endpoint,
        "HF_TOKEN": TOKEN,
        "HF_HUB_DISABLE_XET": "1",  # the double has no Xet storage: uploads go through Git LFS
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield server
    server.stop()


def oneshot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_oneshot.cli", *args], cwd=cwd, capture_output=True, text=True, env=os.environ
    )


def digests(root: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel in task_files(root)}


def outcomes(pytester: pytest.Pytester, *args: str) -> dict[str, str]:
    report = pytester.path / "report.json"
    report.unlink(missing_ok=True)
    pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider", f"--oneshot-json={report}")
    return {item["task_name"]: item["outcome"] for item in json.loads(report.read_text())["items"]}


def test_round_trip_gives_the_same_outcomes(pytester: pytest.Pytester, hub: FakeHub, shipped_tasks: Path) -> None:
    pushed = oneshot("hf", "push", "oneshot/bench", str(shipped_tasks), cwd=pytester.path)
    assert pushed.returncode == 0, pushed.stderr
    files = hub.files("oneshot/bench")
    assert files["tasks/fix-off-by-one/repo.bundle"].lfs, "binary bundles travel through Git LFS"
    assert not files["tasks/fix-off-by-one/tb_meta.json"].lfs
    assert ("PUT", "storage:/upload/" + files["tasks/fix-off-by-one/repo.bundle"].sha256) in hub.requests
    rows = [json.loads(line) for line in files["data/train.jsonl"].data.decode().splitlines()]
    assert [row["slug"] for row in rows] == sorted(path.name for path in shipped_tasks.iterdir())
    assert rows[0]["repo"]["start_commit"] == rows[0]["repo"]["start_commit_sha"]  # OneShot's export and upload names

    pulled = oneshot("hf", "pull", "oneshot/bench", "--out", "pulled", cwd=pytester.path)
    assert pulled.returncode == 0, pulled.stderr
    for task in shipped_tasks.iterdir():
        assert digests(pytester.path / "pulled" / task.name) == digests(task), task.name

    for agent in ("oracle", "nop"):
        original = outcomes(pytester, str(shipped_tasks), f"--oneshot-agent={agent}")
        from_hub = outcomes(pytester, "--oneshot-hf=oneshot/bench", f"--oneshot-agent={agent}")
        assert from_hub == original and len(original) == 6, agent
        assert set(original.values()) == {"passed" if agent == "oracle" else "failed"}
    sha = hub.repos["oneshot/bench"].branches["main"]
    dataset = json.loads((pytester.path / "report.json").read_text())["dataset"]
    assert dataset["sha"] == sha and dataset["revision"] == "main" and dataset["repo_id"] == "oneshot/bench"


def test_a_pinned_revision_runs_from_the_cache_without_the_hub(
    pytester: pytest.Pytester, hub: FakeHub, make_task: Callable[..., Path]
) -> None:
    make_task(pytester.path / "src" / "fix-add")
    assert oneshot("hf", "push", "oneshot/small", "src", cwd=pytester.path).returncode == 0
    sha = hub.repos["oneshot/small"].branches["main"]

    first = outcomes(pytester, f"--oneshot-hf=oneshot/small@{sha}", "--oneshot-agent=oracle")
    hub.stop()
    again = outcomes(pytester, f"--oneshot-hf=oneshot/small@{sha}", "--oneshot-agent=oracle")
    offline = pytester.runpytest_subprocess("--oneshot-hf=oneshot/small", "--oneshot-agent=oracle")

    assert first == again == {"fix-add": "passed"}
    assert offline.ret == pytest.ExitCode.USAGE_ERROR
    offline.stderr.fnmatch_lines(["ERROR: --oneshot-hf: hf download oneshot/small: *"])


def test_pull_one_task_and_name_the_others(pytester: pytest.Pytester, hub: FakeHub, shipped_tasks: Path) -> None:
    assert oneshot("hf", "push", "oneshot/bench", str(shipped_tasks), cwd=pytester.path).returncode == 0

    one = oneshot("hf", "pull", "oneshot/bench", "--task", "fix-off-by-one", "--out", "one", cwd=pytester.path)
    missing = oneshot("hf", "pull", "oneshot/bench", "--task", "nope", "--out", "one", cwd=pytester.path)
    again = oneshot("hf", "pull", "oneshot/bench", "--task", "fix-off-by-one", "--out", "one", cwd=pytester.path)

    assert one.returncode == 0, one.stderr
    assert [path.name for path in (pytester.path / "one").iterdir()] == ["fix-off-by-one"]
    assert missing.returncode == 2 and "no task 'nope' in the dataset (tasks: " in missing.stderr
    assert "fix-off-by-one" in missing.stderr.rpartition("(tasks: ")[2]
    assert again.returncode == 2 and "already has fix-off-by-one (pass --force" in again.stderr


def test_a_second_push_keeps_other_tasks_and_replaces_its_own(
    pytester: pytest.Pytester, hub: FakeHub, make_task: Callable[..., Path]
) -> None:
    first, second = make_task(pytester.path / "a" / "first"), make_task(pytester.path / "b" / "second")
    (first / "extra.txt").write_text("old\n")
    assert oneshot("hf", "push", "oneshot/grow", str(first), cwd=pytester.path).returncode == 0
    (first / "extra.txt").unlink()
    assert oneshot("hf", "push", "oneshot/grow", str(first), str(second), cwd=pytester.path).returncode == 0

    files = hub.files("oneshot/grow")
    assert "tasks/first/extra.txt" not in files and "tasks/second/tb_meta.json" in files
    rows = [json.loads(line)["slug"] for line in files["data/train.jsonl"].data.decode().splitlines()]
    assert rows == ["first", "second"]


def _uploads(hub: FakeHub) -> list[tuple[str, str]]:
    return [
        (method, path) for method, path in hub.requests if "preupload" in path or "commit" in path or "storage" in path
    ]


def test_the_secret_scan_blocks_the_push_naming_file_and_line(
    pytester: pytest.Pytester, hub: FakeHub, shipped_tasks: Path, make_task: Callable[..., Path]
) -> None:
    notes = shipped_tasks / "fix-off-by-one" / "notes.md"
    notes.write_text(notes.read_text() + f"\nmy key: {CANARY}\n")
    line = notes.read_text().splitlines().index(f"my key: {CANARY}") + 1
    in_history = make_task(pytester.path / "hist" / "leaky", files={"settings.py": 'TOKEN = "hf_' + "A" * 34 + '"\n'})

    blocked = oneshot("hf", "push", "oneshot/leak", str(shipped_tasks), cwd=pytester.path)
    history = oneshot("hf", "push", "oneshot/leak", str(in_history), cwd=pytester.path)

    assert blocked.returncode == 2
    assert f"tasks/fix-off-by-one/notes.md:{line}: looks like an OpenAI/Anthropic-style API key" in blocked.stderr
    assert "data/train.jsonl" in blocked.stderr  # the row carries the notes too
    assert CANARY not in blocked.stderr + blocked.stdout
    assert history.returncode == 2
    assert "tasks/leaky/repo.bundle:settings.py@" in history.stderr and "Hugging Face token" in history.stderr
    assert _uploads(hub) == [] and "oneshot/leak" not in hub.repos


def test_sensitive_tasks_stay_off_public_datasets_unless_forced(
    pytester: pytest.Pytester, hub: FakeHub, make_task: Callable[..., Path]
) -> None:
    make_task(pytester.path / "src" / "private-work", sensitivity={"level": "sensitive"})

    public = oneshot("hf", "push", "oneshot/public", "src", cwd=pytester.path)
    private = oneshot("hf", "push", "oneshot/private", "src", "--private", cwd=pytester.path)
    forced = oneshot("hf", "push", "oneshot/public", "src", "--force", cwd=pytester.path)

    assert public.returncode == 2 and "refusing to push tasks marked sensitive to a public dataset: private-work" in (
        public.stderr
    )
    assert private.returncode == 0 and hub.repos["oneshot/private"].private
    assert forced.returncode == 0 and not hub.repos["oneshot/public"].private


def test_jsonl_export_is_a_complete_copy(tmp_path: Path, shipped_tasks: Path) -> None:
    rows = export_tasks([shipped_tasks], tmp_path / "tasks.jsonl")
    rebuilt = list(rows_to_tasks(read_rows(tmp_path / "tasks.jsonl"), tmp_path / "rebuilt"))

    assert [path.name for path in rebuilt] == [row["slug"] for row in rows]
    for path in rebuilt:
        assert digests(path) == digests(shipped_tasks / path.name)
        assert load_task(path).spec == load_task(shipped_tasks / path.name).spec


def test_oneshots_own_dataset_layouts_still_load(pytester: pytest.Pytester, hub: FakeHub) -> None:
    """JoshPurtell/one-shot-bench's layout (tasks/<slug>/ with the prompt in overlay_files/) and OneShot's
    JSONL rows (no files, nested fields as JSON strings) both become task dirs."""
    meta: dict[str, Any] = {
        "task_id": "add-hello_20250812_181007",
        "metadata": {"title": "Add hello", "tags": []},
        "repo": {"git_url": "https://github.com/o/r", "branch": "main", "start_commit_sha": "a" * 40},
        "lm": {"instructions": ""},
        "evaluation": {"rubrics": [{"id": "task_completion", "criterion": "done", "weight": 1.0}], "test_scripts": []},
    }
    hub.repos["josh/one-shot-bench"] = repo = hub.repos.get("josh/one-shot-bench") or _new_repo()
    repo.commit(
        {
            "tasks/add-hello/tb_meta.json": Blob(json.dumps(meta).encode(), False),
            "tasks/add-hello/Dockerfile": Blob(b"FROM ubuntu:24.04\n", False),
            "tasks/add-hello/overlay_files/LM_INSTRUCTIONS.md": Blob(b"# Task: Add hello\n\nappend hello\n", False),
        },
        "upload_prepared_task_hf",
        None,
    )
    row = {
        "task_instance_id": "say-hi_20250823_121259",
        "task_id": "say-hi",
        "title": "Say hi",
        "tags": ["docs"],
        "instructions": "print hi",
        "repo": json.dumps({"git_url": "https://github.com/o/r", "branch": "main", "start_commit": "b" * 40}),
        "evaluation": json.dumps({"rubrics": [{"id": "done", "criterion": "c", "weight": 1}], "test_scripts": []}),
    }
    hub.repos["josh/rows"] = rows_repo = _new_repo()
    rows_repo.commit({"data/train.jsonl": Blob(json.dumps(row).encode() + b"\n", False)}, "rows", None)

    pulled = oneshot("hf", "pull", "josh/one-shot-bench", "--out", "got", cwd=pytester.path)
    from_rows = oneshot("hf", "pull", "josh/rows", "--out", "got", cwd=pytester.path)

    assert pulled.returncode == 0 and from_rows.returncode == 0, pulled.stderr + from_rows.stderr
    task = load_task(pytester.path / "got" / "add-hello")
    assert task.instructions.startswith("# Task: Add hello")
    rebuilt = load_task(pytester.path / "got" / "say-hi")
    assert rebuilt.spec.task_id == "say-hi_20250823_121259" and rebuilt.spec.repo.start_commit_sha == "b" * 40
    assert rebuilt.instructions == "print hi"


def _new_repo() -> Any:
    from fake_hub import Repo

    return Repo(private=False)


def test_bad_dataset_ids_are_usage_errors(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--oneshot-hf=not-a-dataset")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--oneshot-hf: must be a dataset id OWNER/NAME, optionally @REVISION*"])


def test_export_writes_the_oneshot_layout(tmp_path: Path, shipped_tasks: Path) -> None:
    rows = export_tasks([shipped_tasks / "fix-off-by-one"], tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "tasks" / "fix-off-by-one" / "tb_meta.json").is_file()
    assert digests(out / "tasks" / "fix-off-by-one") == digests(shipped_tasks / "fix-off-by-one")
    assert "path: data/train.jsonl" in (out / "README.md").read_text()
    assert rows[0]["repo"]["bundle"] == "tasks/fix-off-by-one/repo.bundle"
    assert (
        rows[0]["files"]["repo.bundle"]["sha256"]
        == hashlib.sha256((shipped_tasks / "fix-off-by-one" / "repo.bundle").read_bytes()).hexdigest()
    )
    shutil.rmtree(out)
