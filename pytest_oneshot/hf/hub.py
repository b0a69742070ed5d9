"""Push and pull task datasets through ``huggingface_hub``, with the safety checks before anything leaves.

``push`` exports the tasks, then refuses before any upload when a task is marked sensitive and the
dataset is (or would be created) public without ``force``, or when the secret scan finds anything in
a file, a row or any blob of a repo bundle's history (the error names the file and line, never the
value). ``fetch_dataset`` resolves a revision to its commit sha and downloads that commit once into
``<cache_dir>/hf/<owner>+<name>/<sha>/``; a full sha is served from there without the network.

The endpoint, token and transfer options are huggingface_hub's own (``HF_ENDPOINT``, ``HF_TOKEN``,
``HF_HUB_DISABLE_XET``...): nothing here knows a URL of the Hub.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pytest_oneshot.errors import OneshotError
from pytest_oneshot.hf.export import (
    ROWS_FILE,
    TASKS_DIR,
    export_tasks,
    read_rows,
    rows_to_tasks,
    write_card,
    write_rows,
)
from pytest_oneshot.repo import git
from pytest_oneshot.secretscan import Finding, scan_text

REPO_TYPE = "dataset"
_SHA = re.compile(r"^[0-9a-f]{40}$")
_COMPLETE = ".oneshot-complete"
MAX_FINDINGS_SHOWN = 10


def _hub_error(action: str, repo_id: str, exc: Exception) -> OneshotError:
    """One line for any huggingface_hub or connection failure (its message's first line, no traceback)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return OneshotError(f"hf {action} {repo_id}: {first}")


def split_revision(spec: str) -> tuple[str, str | None]:
    """``OWNER/NAME[@REVISION]`` -> (repo id, revision or None)."""
    repo_id, _, revision = spec.partition("@")
    return repo_id, revision or None


# -- the secret scan ----------------------------------------------------------------------------------


def _bundle_findings(bundle: Path, name: str) -> Iterator[Finding]:
    """Every blob reachable in a bundle's history, scanned line by line (named ``bundle:path@blob``)."""
    with tempfile.TemporaryDirectory(prefix="oneshot-scan-") as scratch:
        try:
            git("init", "-q", "--bare", scratch)
            git("fetch", "-q", "--no-tags", str(bundle.resolve()), "+refs/*:refs/scan/*", cwd=Path(scratch))
            listing = git("rev-list", "--objects", "--all", cwd=Path(scratch))
        except RuntimeError as exc:
            raise OneshotError(f"{name}: cannot read the bundle to scan it for secrets: {exc}") from None
        paths = dict(line.split(" ", 1) for line in listing.splitlines() if " " in line)
        if not paths:
            return
        batch = subprocess.run(
            ["git", "cat-file", "--batch"],
            cwd=scratch,
            input="".join(f"{sha}\n" for sha in paths).encode(),
            capture_output=True,
            check=True,
        ).stdout
    offset = 0
    while offset < len(batch):
        header_end = batch.index(b"\n", offset)
        sha, kind, size = batch[offset:header_end].decode().split(" ")
        body = batch[header_end + 1 : header_end + 1 + int(size)]
        offset = header_end + 1 + int(size) + 1
        if kind == "blob":
            yield from scan_text(f"{name}:{paths[sha]}@{sha[:12]}", body.decode("utf-8", "replace"))


def scan_export(root: Path) -> list[Finding]:
    """Suspected secrets in every file under ``root`` (bundles: their whole history)."""
    findings: list[Finding] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(root).as_posix()
        data = path.read_bytes()
        if path.suffix == ".bundle" or data.startswith(b"# v2 git bundle") or data.startswith(b"# v3 git bundle"):
            findings.extend(_bundle_findings(path, name))
        else:
            findings.extend(scan_text(name, data.decode("utf-8", "replace")))
    return findings


def check_safe_to_push(root: Path, rows: Iterable[dict[str, Any]], *, public: bool, force: bool) -> None:
    """Refuse, before anything is uploaded, sensitive tasks for a public dataset (unless forced) and any secret.

    Raises:
        OneshotError: naming the sensitive tasks, or each finding's file and line.
    """
    sensitive = [row["slug"] for row in rows if dict(row.get("sensitivity") or {}).get("level") == "sensitive"]
    if sensitive and public and not force:
        raise OneshotError(
            f"refusing to push tasks marked sensitive to a public dataset: {', '.join(sensitive)} "
            "(push to a private dataset with --private, or pass --force)"
        )
    findings = scan_export(root)
    if findings:
        shown = "; ".join(str(finding) for finding in findings[:MAX_FINDINGS_SHOWN])
        more = len(findings) - MAX_FINDINGS_SHOWN
        raise OneshotError(
            f"secret scan: refusing to push: {shown}{f' (and {more} more)' if more > 0 else ''}; "
            "remove the secret (and rewrite the bundle's history) before pushing"
        )


# -- push ------------------------------------------------------------------------------------------------


def push(paths: Iterable[Path], repo_id: str, *, private: bool, force: bool, message: str | None = None) -> str:
    """Export the tasks and commit them to the dataset ``repo_id`` (created if missing); return the commit url.

    Rows already in the dataset for other tasks are kept; a pushed task's old files are replaced.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    api = HfApi()
    with tempfile.TemporaryDirectory(prefix="oneshot-hf-push-") as scratch:
        root = Path(scratch)
        rows = export_tasks(paths, root)
        try:
            info = api.repo_info(repo_id, repo_type=REPO_TYPE)
            exists, is_private = True, bool(info.private)
        except RepositoryNotFoundError:
            exists, is_private = False, private
        except Exception as exc:
            raise _hub_error("push", repo_id, exc) from None
        check_safe_to_push(root, rows, public=not is_private, force=force)
        try:
            remote_files = _remote_files(api, repo_id) if exists else []
            rows = _merged_rows(api, repo_id, rows, remote_files)
            write_rows(root / ROWS_FILE, rows)
            write_card(root, rows)
            api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
            local = sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
            pushed = {f"{TASKS_DIR}/{row['slug']}/" for row in rows if (root / TASKS_DIR / row["slug"]).is_dir()}
            stale = [path for path in remote_files if path.startswith(tuple(pushed)) and path not in local]
            operations: list[CommitOperationAdd | CommitOperationDelete] = [
                *(CommitOperationDelete(path_in_repo=path) for path in stale),
                *(CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(root / path)) for path in local),
            ]
            commit = api.create_commit(
                repo_id,
                operations=operations,
                commit_message=message or f"oneshot: push {len(pushed)} task(s)",
                repo_type=REPO_TYPE,
            )
        except OneshotError:
            raise
        except Exception as exc:
            raise _hub_error("push", repo_id, exc) from None
    return str(commit.commit_url)


def _remote_files(api: Any, repo_id: str) -> list[str]:
    from huggingface_hub.hf_api import RepoFile

    return [
        entry.path
        for entry in api.list_repo_tree(repo_id, recursive=True, repo_type=REPO_TYPE)
        if isinstance(entry, RepoFile)
    ]


def _merged_rows(api: Any, repo_id: str, rows: list[dict[str, Any]], remote_files: list[str]) -> list[dict[str, Any]]:
    """The dataset's existing rows with the pushed tasks' rows replacing theirs (by slug)."""
    if ROWS_FILE not in remote_files:
        return rows
    from huggingface_hub import hf_hub_download

    with tempfile.TemporaryDirectory(prefix="oneshot-hf-rows-") as scratch:
        path = hf_hub_download(repo_id, ROWS_FILE, repo_type=REPO_TYPE, local_dir=scratch)
        merged = {row["slug"]: row for row in read_rows(Path(path))}
    merged.update({row["slug"]: row for row in rows})
    return [merged[slug] for slug in sorted(merged)]


# -- pull -------------------------------------------------------------------------------------------------


def fetch_dataset(spec: str, cache_dir: Path, *, task: str | None = None) -> dict[str, str]:
    """Download ``OWNER/NAME[@REVISION]`` (or one task of it) at a pinned commit; return where its tasks are.

    Returns:
        ``repo_id``, ``revision`` (as asked, default ``main``), ``sha`` (the commit), ``tasks_dir``.
    """
    from huggingface_hub import HfApi, snapshot_download

    repo_id, revision = split_revision(spec)
    root = cache_dir / "hf" / repo_id.replace("/", "+")
    patterns = [f"{TASKS_DIR}/{task}/**", ROWS_FILE] if task else [f"{TASKS_DIR}/**", ROWS_FILE]
    marker = _COMPLETE + (f"-{task}" if task else "")
    sha = revision if revision and _SHA.match(revision) else None
    if sha is None or not any((root / sha / name).is_file() for name in (marker, _COMPLETE)):
        try:
            if sha is None:
                sha = str(HfApi().repo_info(repo_id, repo_type=REPO_TYPE, revision=revision).sha)
            local = root / sha
            if not any((local / name).is_file() for name in (marker, _COMPLETE)):
                snapshot_download(repo_id, repo_type=REPO_TYPE, revision=sha, local_dir=local, allow_patterns=patterns)
        except Exception as exc:
            raise _hub_error("download", spec, exc) from None
        _tasks_from_rows(local)
        (local / marker).touch()
    tasks_dir = root / sha / TASKS_DIR
    if task is not None and not (tasks_dir / task).is_dir():
        known = ", ".join(sorted(path.name for path in tasks_dir.iterdir())) if tasks_dir.is_dir() else "none"
        raise OneshotError(f"hf download {spec}: no task {task!r} in the dataset (tasks: {known})")
    return {"repo_id": repo_id, "revision": revision or "main", "sha": sha, "tasks_dir": str(tasks_dir)}


def _tasks_from_rows(local: Path) -> None:
    """A dataset with rows only (a ``.jsonl`` export, or OneShot's own): task dirs rebuilt from its rows."""
    rows_file = local / ROWS_FILE
    if (local / TASKS_DIR).is_dir() or not rows_file.is_file():
        return
    list(rows_to_tasks(read_rows(rows_file), local / TASKS_DIR, source=local))


def pull(spec: str, cache_dir: Path, out: Path, *, task: str | None = None, force: bool = False) -> dict[str, Any]:
    """Copy the dataset's tasks (or one) into ``out/<slug>/`` as plain files; refuse to overwrite without ``force``."""
    dataset = fetch_dataset(spec, cache_dir, task=task)
    tasks_dir = Path(dataset["tasks_dir"])
    slugs = [task] if task else sorted(path.name for path in tasks_dir.iterdir() if path.is_dir())
    existing = [slug for slug in slugs if (out / slug).exists()]
    if existing and not force:
        raise OneshotError(f"{out}: already has {', '.join(existing)} (pass --force to replace them)")
    for slug in slugs:
        shutil.rmtree(out / slug, ignore_errors=True)
        shutil.copytree(tasks_dir / slug, out / slug)
    return {**dataset, "tasks": slugs}
