"""The task image: the task's environment (base image, its Dockerfile, packages) plus the repo at its
start commit and the setup already run.

Its tag is a hash of everything that goes into it, so an unchanged task never rebuilds and tasks that
share an environment share an image. Its build context is the repo and a generated Dockerfile only:
nothing of the answer (reference diff, notes, hidden tests, tb_meta.json) and no secret can reach a
layer. Parallel workers build each image once (a host-wide lock per tag).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path, PurePosixPath

from oneshot_shared.paths import cache_dir as default_cache_dir
from pytest_oneshot.errors import InfraError, SandboxUnavailableError
from pytest_oneshot.repo import git
from pytest_oneshot.sandbox.docker_env import build_image, deps_image, needs_image
from pytest_oneshot.sandbox.docker_reap import LABEL
from pytest_oneshot.sandbox.dockerd import BASE_IMAGE, Engine, ensure_base_image
from pytest_oneshot.sandbox.environment import record_build
from pytest_oneshot.sandbox.progress import Progress, stderr_progress
from pytest_oneshot.task import Task
from pytest_oneshot.task_tests import REPORT_DIR, VERIFIER_DIR

WORKSPACE = "/workspace"
IMAGE_REPOSITORY = "oneshot-env"
_IMAGE_FORMAT = "1"  # bump when the generated Dockerfile changes shape: every image rebuilds
SETUP_TIMEOUT_SEC = 900.0  # per setup command, as in the local sandbox


def builds_log(cache_dir: Path | None = None) -> Path:
    """One line per environment image actually built: ``time<TAB>tag<TAB>task<TAB>seconds``."""
    return (cache_dir or default_cache_dir()) / "docker" / "builds.log"


def dockerfile_head(task: Task, base_image: str) -> str:
    """The task's own Dockerfile, or ``FROM base_image``."""
    env = task.spec.environment
    return (task.paths.root / env.dockerfile).read_text() if env.dockerfile else f"FROM {base_image}\n"


def render_dockerfile(task: Task, base_image: str, *, on_environment: bool = False) -> str:
    """The task's own Dockerfile (or ``FROM base_image``) followed by the repo, git identity and setup.

    ``on_environment``: ``base_image`` is the task's environment image, which holds its Dockerfile already.
    """
    env = task.spec.environment
    head = f"FROM {base_image}\n" if on_environment else dockerfile_head(task, base_image)
    workdir = PurePosixPath(WORKSPACE, task.spec.repo.subdir)
    lines = [
        head.rstrip("\n"),
        "# --- added by pytest-oneshot ---",
        f"COPY repo {WORKSPACE}",
        (
            "RUN git config --system user.name oneshot && git config --system user.email oneshot@localhost"
            " && git config --system --add safe.directory '*'"
        ),
        f"WORKDIR {json.dumps(str(workdir))}",
        *(f"RUN {json.dumps(['bash', '-c', command])}" for command in env.setup),
    ]
    report = task.spec.tests.report_file
    if report and PurePosixPath(report).is_absolute():  # Harbor's verifier dir: the scoring run's fresh one
        link = f"ln -s /root/{VERIFIER_DIR} {REPORT_DIR}"  # the scoring sandbox's HOME is /root
        lines.append(f"RUN rm -rf {REPORT_DIR} && mkdir -p {PurePosixPath(REPORT_DIR).parent} && {link}")
    return "\n".join(lines) + "\n"


_known_images: dict[tuple[str, str, str, str], str] = {}
"""(engine, task dir, snapshot, base image) -> tag already found or built by this process: a trial starts two
containers of the same image, and rollouts many more, so the lookup (~35 ms of CLI calls) is done once."""


def environment_image(
    engine: Engine,
    task: Task,
    snapshot: Path,
    *,
    base_image: str = BASE_IMAGE,
    cache_dir: Path | None = None,
    progress: Progress = stderr_progress,
) -> str:
    """Return the tag of the task's image, building it once per content hash (looked up once per process).

    A task with ``system_packages`` or ``pip`` builds on its environment image (:mod:`docker_env`).

    Raises:
        SandboxUnavailableError: the base image is missing and cannot be built.
        InfraError: the snapshot is unreadable, a package cannot be installed, or a setup command failed.
    """
    key = (engine.host, str(task.paths.root), str(snapshot), base_image)
    if key not in _known_images:
        _known_images[key] = _find_or_build_image(engine, task, snapshot, base_image, cache_dir, progress)
    return _known_images[key]


def _find_or_build_image(
    engine: Engine, task: Task, snapshot: Path, base_image: str, cache_dir: Path | None, progress: Progress
) -> str:
    env = task.spec.environment
    base_id = "" if env.dockerfile else _base_image_id(engine, base_image, progress)
    try:
        head, tree = git("rev-parse", "HEAD", "HEAD^{tree}", cwd=snapshot).split()
    except RuntimeError as exc:
        raise InfraError("sandbox", f"repo snapshot {snapshot} is unreadable: {exc}") from None
    subdir = task.spec.repo.subdir
    if subdir and _object_type(snapshot, f"HEAD:{subdir}") != "tree":
        raise InfraError("sandbox", f"{task.paths.meta}: repo.subdir {subdir!r} is not a directory at the start commit")
    log_path = builds_log(cache_dir)
    if needs_image(env):
        base_image = deps_image(
            engine,
            task,
            tree,
            head=dockerfile_head(task, base_image),
            base_id=base_id,
            snapshot=snapshot,
            builds_log=log_path,
            labels={f"{LABEL}.task": task.name},
            progress=progress,
        )
        base_id = engine.image_id(base_image) or base_image
    dockerfile = render_dockerfile(task, base_image, on_environment=needs_image(env))
    context = {name: hashlib.sha256(data).hexdigest() for name, data in task.docker_context().items()}
    content = json.dumps([_IMAGE_FORMAT, base_id, dockerfile, head, tree, *([context] if context else [])])
    tag = f"{IMAGE_REPOSITORY}:{hashlib.sha256(content.encode()).hexdigest()[:24]}"
    if engine.image_id(tag):
        return tag
    with engine.lock(tag.partition(":")[2]):
        if engine.image_id(tag):  # built by another worker while we waited
            return tag
        progress(f"building docker image {tag} for task {task.name}")
        started = time.monotonic()
        _build(engine, tag, dockerfile, snapshot, task, log_path.parent / f"{tag.partition(':')[2]}.log", progress)
        record_build(log_path, tag, task.name, time.monotonic() - started)
    return tag


def _object_type(repo: Path, name: str) -> str:
    try:
        return git("cat-file", "-t", name, cwd=repo)
    except RuntimeError:
        return "missing"


def _base_image_id(engine: Engine, name: str, progress: Progress) -> str:
    if name == BASE_IMAGE:
        return ensure_base_image(engine, name, progress)
    found = engine.image_id(name)
    if found is None:
        raise SandboxUnavailableError(f"docker image {name} not found on {engine.host}; pull or load it first")
    return found


def _build(
    engine: Engine, tag: str, dockerfile: str, snapshot: Path, task: Task, log: Path, progress: Progress
) -> None:
    """``docker build``, offline, from a context of exactly the Dockerfile, the files beside the task's own
    Dockerfile (see :meth:`Task.docker_context`) and a fresh clone of the snapshot as ``repo/``."""
    timeout = SETUP_TIMEOUT_SEC * max(1, len(task.spec.environment.setup))
    label = f"docker image {tag} for task {task.name}"
    returncode, output = build_image(
        engine,
        tag,
        dockerfile,
        snapshot=snapshot,
        files=task.docker_context(),
        network="none",
        labels={f"{LABEL}.task": task.name},
        label=label,
        log=log,
        progress=progress,
        timeout=timeout,
    )
    if returncode != 0:
        tail = " | ".join(line for line in output.strip().splitlines()[-6:] if line.strip())
        raise InfraError("setup", f"building the docker image for task {task.name} failed: {tail}")
