"""Tasks as a Hugging Face dataset: one JSONL row per task, plus the task files in OneShot's ``tasks/<slug>/`` layout.

An export directory (what ``oneshot hf push`` uploads)::

    README.md               dataset card (its YAML names data/train.jsonl, so `datasets` loads the rows)
    data/train.jsonl        one row per task (ROW_SCHEMA); files are referenced by path and sha256
    tasks/<slug>/...        every file of the task dir: tb_meta.json, repo.bundle, diff.patch, hidden/, ...

``--out FILE.jsonl`` writes only the rows, each carrying its files' bytes (text as UTF-8, the rest as
base64), so the one file is a complete copy. Rows keep the keys of OneShot's export
(``task_instance_id``, ``task_id``, ``repo.start_commit``, ``evaluation``, ``artifacts``, ``meta``) and
add the tb_meta names its upload expected (``repo.start_commit_sha``, ``metadata``, ``sensitivity``),
so readers of either keep working; :func:`rows_to_tasks` rebuilds task dirs from rows (with
``task_id``, not OneShot's ``id``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from pytest_oneshot.errors import OneshotError
from pytest_oneshot.task import META_FILE, Task, load_task

ROW_SCHEMA = "pytest-oneshot/hf-task/1"
ROWS_FILE = "data/train.jsonl"
TASKS_DIR = "tasks"
_SKIPPED_NAMES = {".env", "mitmproxy-ca-cert.pem", "__pycache__", ".git", ".pytest_cache", "codex-files"}
"""Never exported (OneShot's upload left the same out): keys, caches, the host's codex."""
_TIMESTAMP = re.compile(r"_\d{8}_\d{6}$")


def find_task_dirs(paths: Iterable[Path]) -> list[Path]:
    """Task dirs named directly, or found one level below a directory of tasks (``tasks/``)."""
    found: list[Path] = []
    for path in paths:
        if (path / META_FILE).is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(child for child in path.iterdir() if (child / META_FILE).is_file()))
        else:
            raise OneshotError(f"{path}: not a task directory (no {META_FILE}) nor a directory of tasks")
    if not found:
        raise OneshotError(f"no task directories in {', '.join(map(str, paths))}")
    slugs = [path.name for path in found]
    for slug in slugs:
        if slugs.count(slug) > 1:
            raise OneshotError(f"two tasks are named {slug!r}: a dataset holds each slug once")
    return found


def task_files(task_dir: Path) -> list[str]:
    """The task's files to export, relative and sorted (symlinks are refused: their target is not the task's)."""
    files: list[str] = []
    for path in sorted(task_dir.rglob("*")):
        relative = path.relative_to(task_dir)
        if _SKIPPED_NAMES & set(relative.parts) or path.suffix in (".pyc", ".pyo"):
            continue
        if path.is_symlink():
            raise OneshotError(f"{path}: a symlink; a dataset holds regular files only")
        if path.is_file():
            files.append(relative.as_posix())
    return files


def _stable_task_id(task_id: str) -> str:
    """OneShot's rule: a created task's id without its ``_YYYYMMDD_HHMMSS`` suffix."""
    return _TIMESTAMP.sub("", task_id)


def _file_entry(data: bytes, *, embed: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    if embed:
        try:
            entry.update(encoding="utf-8", content=data.decode("utf-8"))
        except UnicodeDecodeError:
            entry.update(encoding="base64", content=base64.b64encode(data).decode("ascii"))
    return entry


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def task_row(task: Task, *, embed: bool) -> dict[str, Any]:
    """One dataset row: OneShot's export keys, the tb_meta names its upload expected, and every file."""
    spec, slug = task.spec, task.name
    prefix = f"{TASKS_DIR}/{slug}"
    files = {rel: _file_entry((task.paths.root / rel).read_bytes(), embed=embed) for rel in task_files(task.paths.root)}
    repo = spec.repo
    return {
        "schema": ROW_SCHEMA,
        "slug": slug,
        "task_instance_id": spec.task_id,
        "task_id": _stable_task_id(spec.task_id),
        "title": spec.title,
        "tags": spec.metadata.tags,
        "instructions": task.instructions,
        "metadata": spec.metadata.model_dump(),
        "created_at": spec.metadata.created_at,
        "sensitivity": spec.sensitivity.model_dump(),
        "repo": {
            "git_url": repo.git_url,
            "branch": repo.branch,
            "start_commit": repo.start_commit_sha,
            "end_commit": repo.end_commit_sha,
            "start_commit_sha": repo.start_commit_sha,
            "end_commit_sha": repo.end_commit_sha,
            "subdir": repo.subdir,
            "sparse_checkout": repo.sparse_checkout,
            "bundle": f"{prefix}/{repo.bundle}" if repo.bundle else None,
        },
        "evaluation": spec.evaluation.model_dump(),
        "tests": {**spec.tests.model_dump(), "hidden_files": sorted(task.hidden_files())},
        "environment": spec.environment.model_dump(),
        "limits": spec.limits.model_dump(),
        "artifacts": {
            "diff_patch": _text(task.paths.reference_diff),
            "notes": _text(task.paths.notes),
            "repo_info": _text(task.paths.root / "repo_info.json"),
            "paths": {"tb_meta": f"{prefix}/{META_FILE}", "task_dir": prefix},
        },
        "meta": {"prepared_version": "pytest-oneshot", "created_from": prefix},
        "tb_meta": task.paths.meta.read_text(encoding="utf-8"),
        "files": files,
    }


def export_tasks(paths: Iterable[Path], out: Path) -> list[dict[str, Any]]:
    """Export the tasks under ``paths`` to ``out`` (a directory, or a ``.jsonl`` file); return the rows.

    Raises:
        OneshotError: a path holds no task, or a task is malformed (naming its file and field).
    """
    tasks = [load_task(path) for path in find_task_dirs(paths)]
    embed = out.suffix == ".jsonl"
    rows = [task_row(task, embed=embed) for task in tasks]
    if embed:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_rows(out, rows)
        return rows
    for task in tasks:
        dest = out / TASKS_DIR / task.name
        shutil.rmtree(dest, ignore_errors=True)
        for rel in task_files(task.paths.root):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(task.paths.root / rel, dest / rel)
    write_rows(out / ROWS_FILE, rows)
    write_card(out, rows)
    return rows


def write_rows(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows), encoding="utf-8")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL export (a malformed line is named by its number)."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise OneshotError(f"{path}:{number}: not a JSON row: {exc}") from None
        if not isinstance(row, dict) or not isinstance(row.get("slug", row.get("task_instance_id")), str):
            raise OneshotError(f"{path}:{number}: not a task row (no slug)")
        rows.append(row)
    return rows


def write_card(out: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """The dataset card: the rows as the ``default`` config, and a table of the tasks."""
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        f"    path: {ROWS_FILE}",
        "tags:",
        "- pytest-oneshot",
        "- coding-agents",
        "---",
        "",
        "# Coding-agent evaluation tasks",
        "",
        "Run them with [pytest-oneshot](https://pypi.org/project/pytest-oneshot/): "
        "`pytest --oneshot-hf OWNER/NAME`, or `oneshot hf pull OWNER/NAME` for task directories.",
        "",
        "| task | title | tags |",
        "|---|---|---|",
        *(f"| `{row['slug']}` | {row['title']} | {', '.join(row['tags'])} |" for row in rows),
        "",
    ]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")


def _safe_relative(slug: str, rel: str) -> str:
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or ".." in path.parts:
        raise OneshotError(f"row {slug!r}: file path {rel!r} is not inside the task")
    return rel


def rows_to_tasks(rows: Iterable[Mapping[str, Any]], out: Path, source: Path | None = None) -> Iterator[Path]:
    """Rebuild task dirs under ``out`` from rows: from their embedded files, else from ``source/tasks/<slug>``;
    each file is checked against the row's sha256."""
    for row in rows:
        slug = str(row.get("slug") or _stable_task_id(str(row["task_instance_id"])))
        if "/" in slug or slug in ("", ".", ".."):
            raise OneshotError(f"row {slug!r}: not a usable task directory name")
        dest = out / slug
        for rel, entry in dict(row.get("files") or {}).items():
            target = dest / _safe_relative(slug, rel)
            if "content" in entry:
                content = str(entry["content"])
                data = base64.b64decode(content) if entry.get("encoding") == "base64" else content.encode("utf-8")
            elif source is not None and (source / TASKS_DIR / slug / rel).is_file():
                data = (source / TASKS_DIR / slug / rel).read_bytes()
            else:
                raise OneshotError(f"row {slug!r}: file {rel} is neither in the row nor in the dataset")
            if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
                raise OneshotError(f"row {slug!r}: file {rel} does not match its sha256")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if not (dest / META_FILE).is_file():
            dest.mkdir(parents=True, exist_ok=True)
            meta = str(row["tb_meta"]) if row.get("tb_meta") else json.dumps(_oneshot_meta(row), indent=2)
            (dest / META_FILE).write_text(meta, encoding="utf-8")
        yield dest


def _decoded(value: Any) -> Any:
    """OneShot's upload stored nested fields as JSON strings."""
    return json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value


def _oneshot_meta(row: Mapping[str, Any]) -> dict[str, Any]:
    """A tb_meta.json from a row of OneShot's own JSONL export or upload (no files, no tb_meta)."""
    repo = dict(_decoded(row.get("repo")) or {})
    metadata = dict(_decoded(row.get("metadata")) or {})
    return {
        "task_id": row["task_instance_id"],
        "metadata": {"title": row.get("title") or metadata.get("title", ""), "tags": row.get("tags") or []},
        "repo": {
            "git_url": repo.get("git_url", ""),
            "branch": repo.get("branch", ""),
            "start_commit_sha": repo.get("start_commit_sha") or repo.get("start_commit", ""),
            "end_commit_sha": repo.get("end_commit_sha") or repo.get("end_commit", ""),
            "subdir": repo.get("subdir", ""),
        },
        "lm": {"instructions": row.get("instructions", "")},
        "evaluation": _decoded(row.get("evaluation")) or {},
    }
