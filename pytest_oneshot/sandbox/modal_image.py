"""What a Modal Sandbox starts from: the task's image, and the agent's files in Volumes.

The image is the docker sandbox's, written as one Dockerfile (:func:`modal_dockerfile`: the task's
Dockerfile or the base, its Debian packages and venv, the repo at its start commit, git's identity, the
setup commands) and built by Modal's image API (``Image.from_dockerfile``) from a context of exactly
that Dockerfile and a fresh clone of the repo snapshot, so nothing of the answer and no secret reaches a
layer. Modal caches builds by content; this process builds each task's image once (two Sandboxes per
trial, and rollouts, share it).

Read-only host files a sandbox mounts (the agent's binary) are uploaded once to a Modal Volume named by
their content hash, then mounted read-only in every Sandbox: a 300 MB codex binary crosses the network
once, not per trial.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_oneshot.errors import InfraError
from pytest_oneshot.repo import git
from pytest_oneshot.sandbox.docker_env import needs_image, render_deps_dockerfile
from pytest_oneshot.sandbox.docker_image import dockerfile_head, render_dockerfile
from pytest_oneshot.sandbox.environment import pip_arguments, reads_repo
from pytest_oneshot.task import Task

DEFAULT_BASE = (
    "FROM debian:bookworm-slim\n"
    "RUN apt-get update && apt-get install -y --no-install-recommends python3 git ca-certificates"
    " && rm -rf /var/lib/apt/lists/*\n"
)
"""The docker sandbox's base (Debian bookworm with python3, git and CA certificates: ``oneshot docker
base``), from a public registry, as Modal's builder can pull it."""
MOUNTS_DIR = "/oneshot/mounts"
"""Where a Volume holding a mounted *file* is mounted; the file's sandbox path is a symlink into it."""
_UPLOAD_CHUNK = 1 << 20


def modal_dockerfile(task: Task, base_image: str = "") -> str:
    """The task's image as the docker sandbox builds it (environment image and task image), in one Dockerfile."""
    env = task.spec.environment
    head = dockerfile_head(task, base_image) if env.dockerfile or base_image else DEFAULT_BASE
    if needs_image(env):
        with_repo = bool(env.pip) and reads_repo(pip_arguments(env))
        head = render_deps_dockerfile(head, env, with_repo=with_repo, with_ca=False)  # Modal's builder has its CAs
    task_part = render_dockerfile(task, "environment", on_environment=True).split("\n", 1)[1]  # less its FROM
    return head.rstrip("\n") + "\n" + task_part


_images: dict[tuple[str, str, str, str], Any] = {}
_images_lock = threading.Lock()


def task_image(modal: Any, app: Any, task: Task, snapshot: Path, base_image: str) -> Any:
    """The task's built ``modal.Image`` (built once per process; Modal reuses unchanged layers).

    Raises:
        InfraError: the snapshot cannot be cloned, or the build failed (naming the task and Modal's error).
    """
    key = (app.app_id, str(task.paths.root), str(snapshot), base_image)
    with _images_lock:  # held through the build: a trial's two Sandboxes ask at once
        if key not in _images:
            _images[key] = _build(modal, app, task, snapshot, modal_dockerfile(task, base_image))
        return _images[key]


def _build(modal: Any, app: Any, task: Task, snapshot: Path, dockerfile: str) -> Any:
    with tempfile.TemporaryDirectory(prefix="oneshot-modal-context-") as context:
        try:
            git("clone", "-q", "--no-hardlinks", str(snapshot), str(Path(context, "repo")))
            git("remote", "remove", "origin", cwd=Path(context, "repo"))
        except RuntimeError as exc:
            raise InfraError("sandbox", f"could not copy the repo snapshot {snapshot}: {exc}") from None
        Path(context, "Dockerfile").write_text(dockerfile)
        image = modal.Image.from_dockerfile(Path(context, "Dockerfile"), context_dir=context)
        try:
            return image.build(app)  # now, while the context exists
        except modal.exception.Error as exc:
            raise InfraError("setup", f"building the Modal image for task {task.name} failed: {exc}") from None


_volumes: dict[tuple[str, float, int], tuple[str, Any]] = {}
_volumes_lock = threading.Lock()


def mount_volumes(modal: Any, mounts: Mapping[Path, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Read-only Volumes for ``mounts`` ({host path: sandbox path}), uploaded once per content.

    Returns ``(volumes, links)``: ``volumes`` for ``Sandbox.create`` (a directory's Volume is mounted at its
    sandbox path), ``links`` {sandbox path: path in a Volume} for mounted files, which a Volume cannot be.
    """
    volumes: dict[str, Any] = {}
    links: dict[str, str] = {}
    for host, target in mounts.items():
        digest, volume = _uploaded(modal, Path(host).resolve())
        if Path(host).is_dir():
            volumes[target] = volume.read_only()
        else:
            volumes[f"{MOUNTS_DIR}/{digest}"] = volume.read_only()
            links[target] = f"{MOUNTS_DIR}/{digest}/{Path(host).name}"
    return volumes, links


def _uploaded(modal: Any, host: Path) -> tuple[str, Any]:
    stat = host.stat()
    key = (str(host), stat.st_mtime, stat.st_size)
    with _volumes_lock:
        if key not in _volumes:
            digest = _content_hash(host)
            volume = modal.Volume.from_name(f"oneshot-mount-{digest}", create_if_missing=True)
            if not volume.listdir("/"):  # a batch lands whole or not at all: empty means not uploaded yet
                with volume.batch_upload(force=True) as batch:
                    if host.is_dir():
                        batch.put_directory(host, "/")
                    else:
                        batch.put_file(host, f"/{host.name}", mode=stat.st_mode & 0o777)
            _volumes[key] = (digest, volume)
        return _volumes[key]


def _content_hash(host: Path) -> str:
    """Names, modes and bytes of a file or a directory tree (symlinks by their target)."""
    digest = hashlib.sha256()
    paths = [host] if not host.is_dir() else sorted(path for path in host.rglob("*") if not path.is_dir())
    for path in paths:
        digest.update(f"{path.relative_to(host) if path != host else path.name}\0{os.lstat(path).st_mode}\0".encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
            continue
        with open(path, "rb") as file:
            while chunk := file.read(_UPLOAD_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()[:24]
