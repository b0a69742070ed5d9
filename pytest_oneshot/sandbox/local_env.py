"""The local sandbox's environments: a venv per environment under ``<cache_dir>/envs/<hash>/``.

It is built once (file-locked, so xdist workers build it once) inside a bubblewrap that has
network for the build only, with the repo at ``/workspace`` (so ``-e .`` points where every
trial's workspace is) and the venv at :data:`VENV`, where every trial then mounts it read-only.
The venv runs the harness's own base interpreter, which every local sandbox already mounts.
Debian packages cannot be installed on the host from here: they must be present, and a missing
one is named.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pytest_oneshot.errors import InfraError
from pytest_oneshot.repo import git
from pytest_oneshot.sandbox.bwrap import SANDBOX_HOME, SANDBOX_WORKSPACE, base_env, bwrap_argv
from pytest_oneshot.sandbox.environment import (
    VENV,
    VENV_SCRIPT,
    build_failure,
    describe,
    environment_key,
    host_ca_bundle,
    pip_arguments,
    pip_env,
    reads_repo,
    record_build,
    run_build,
)
from pytest_oneshot.sandbox.progress import Progress, file_lock, stderr_progress
from pytest_oneshot.task import Task

_FORMAT = "1"  # bump when the build changes shape: every local environment rebuilds


def envs_dir(cache_dir: Path) -> Path:
    """Where local environments live; ``builds.log`` there lists each one actually built."""
    return cache_dir / "envs"


def missing_system_packages(names: list[str]) -> list[str]:
    """The Debian packages among ``names`` that are not installed on this host."""
    if not names:
        return []
    if shutil.which("dpkg-query") is None:
        return list(names)
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\\n", *names], capture_output=True, text=True
    )
    installed = {line.split()[0] for line in proc.stdout.splitlines() if line.endswith(" installed")}
    return [name for name in names if name.split(":")[0] not in installed]


def ensure_local_environment(
    task: Task, snapshot: Path, cache_dir: Path, bwrap: str | None, progress: Progress = stderr_progress
) -> Path | None:
    """The host dir of the task's venv (built the first time), or None when the task installs nothing.

    Raises:
        InfraError: a system package is missing, bubblewrap is missing, or the install failed
            (naming the package and the command, with pip's error line).
    """
    env = task.spec.environment
    missing = missing_system_packages(env.system_packages)
    if missing:
        raise InfraError(
            "setup",
            f"{task.paths.meta}: environment.system_packages: not installed on this host: {' '.join(missing)} "
            f"(the local sandbox uses the host's packages: `apt-get install {' '.join(missing)}`, "
            "or use --oneshot-sandbox=docker)",
        )
    if not env.pip:
        return None
    if bwrap is None:
        raise InfraError(
            "sandbox",
            f"{task.paths.meta}: environment.pip needs bubblewrap in the local sandbox (the venv lives at {VENV}); "
            "`apt-get install bubblewrap` or use --oneshot-sandbox=docker",
        )
    args = pip_arguments(env)
    python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    tree = git("rev-parse", "HEAD^{tree}", cwd=snapshot) if reads_repo(args) else None
    key = environment_key(_FORMAT, python, sys.version, args, tree)
    root = envs_dir(cache_dir)
    venv = root / key / "venv"
    if (venv / "bin" / "python").exists():
        return venv
    with file_lock(root / f"{key}.lock"):
        if not (venv / "bin" / "python").exists():  # else built by another worker while we waited
            _build(task, snapshot, bwrap, root / key, python, args, progress)
    return venv


def _build(
    task: Task, snapshot: Path, bwrap: str, target: Path, python: str, args: list[str], progress: Progress
) -> None:
    """Build the venv in ``<target>.partial`` and rename it into place, so a half-built one is never used."""
    root, key = target.parent, target.name
    partial = root / f"{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # a build that died half-way
    repo, home = partial / "repo", partial / "home"
    for path in (partial / "venv", home):
        path.mkdir(parents=True)
    log = root / f"{key}.log"
    label = f"environment {key} for task {task.name}"
    progress(f"building {label} ({describe(task.spec.environment)}); log: {log}")
    started = time.monotonic()
    try:
        try:
            git("clone", "-q", "--no-hardlinks", str(snapshot), str(repo))
        except RuntimeError as exc:
            raise InfraError("sandbox", f"could not copy the repo snapshot {snapshot}: {exc}") from None
        ca = host_ca_bundle()
        argv = bwrap_argv(
            bwrap,
            ["bash", "-c", VENV_SCRIPT, "bash", python, *args],
            SANDBOX_WORKSPACE,
            share_net=True,
            binds=[(repo, SANDBOX_WORKSPACE), (partial / "venv", VENV), (home, SANDBOX_HOME)],
            ro_binds=[(ca, str(ca))] if ca else [],
        )
        env = {**base_env(SANDBOX_HOME, "/tmp"), **pip_env(str(ca) if ca else None)}
        returncode, output = run_build(argv, label=label, log=log, progress=progress, env=env)
        if returncode != 0:
            raise build_failure(task, output, log)
        shutil.rmtree(repo)
        shutil.rmtree(home)
        os.rename(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    seconds = time.monotonic() - started
    record_build(root / "builds.log", key, task.name, seconds)
    progress(f"built {label} in {seconds:.1f}s")
