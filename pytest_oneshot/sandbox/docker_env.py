"""The docker sandbox's environments: an image with the task's Debian packages and venv.

It sits between the base image (or the task's own Dockerfile) and the task image, is tagged by a
hash of everything in it, and is the only build that gets network (``--network host``: this engine
runs with ``--bridge=none``), trusting the host's CA bundle, which it carries in its context. The
task image built on it (repo, setup commands) stays offline, and so do the containers.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import requests
from docker.types import CancellableStream

from pytest_oneshot.errors import InfraError
from pytest_oneshot.repo import git
from pytest_oneshot.sandbox.dockerd import Engine
from pytest_oneshot.sandbox.environment import (
    BUILD_TIMEOUT_SEC,
    STEP_MARK,
    VENV,
    VENV_BIN,
    VENV_SCRIPT,
    build_failure,
    describe,
    drive_build,
    environment_key,
    host_ca_bundle,
    pip_arguments,
    pip_env,
    reads_repo,
    record_build,
)
from pytest_oneshot.sandbox.process import OnOutput, Running
from pytest_oneshot.sandbox.progress import Progress
from pytest_oneshot.task import EnvironmentSpec, Task

DEPS_REPOSITORY = "oneshot-deps"
WORKSPACE = "/workspace"
_FORMAT = "1"  # bump when the generated Dockerfile changes shape: every environment image rebuilds
_CA_FILE = "oneshot-build-ca.crt"
_CA_PATH = f"/oneshot/{_CA_FILE}"
# `bash -c _APT_SCRIPT bash WANT_VENV PACKAGES...`: the task's packages, plus python3-venv when a venv
# is wanted and the image's python3 lacks ensurepip (Debian splits it out); nothing when none is needed.
_APT_SCRIPT = f"""set -e
want_venv=$1; shift; pkgs="$*"
if [ "$want_venv" = 1 ] && ! python3 -c 'import ensurepip' 2>/dev/null; then pkgs="python3-venv $pkgs"; fi
[ -n "$pkgs" ] || exit 0
echo "{STEP_MARK} apt-get install $pkgs"
set -- -q; [ -f {_CA_PATH} ] && set -- -q -o Acquire::https::CAInfo={_CA_PATH}
export DEBIAN_FRONTEND=noninteractive
apt-get "$@" update
apt-get "$@" install -y --no-install-recommends $pkgs
rm -rf /var/lib/apt/lists/*
"""


def needs_image(env: EnvironmentSpec) -> bool:
    return bool(env.pip or env.system_packages)


def render_deps_dockerfile(head: str, env: EnvironmentSpec, *, with_repo: bool, with_ca: bool) -> str:
    """``head`` (``FROM base`` or the task's Dockerfile), then the packages and the venv."""
    lines = [head.rstrip("\n"), "# --- environment added by pytest-oneshot (built with network) ---"]
    if with_ca:
        lines.append(f"COPY {_CA_FILE} {_CA_PATH}")
    apt = ["bash", "-c", _APT_SCRIPT, "bash", "1" if env.pip else "0", *env.system_packages]
    lines.append(f"RUN {json.dumps(apt)}")
    if env.pip:
        if with_repo:
            lines += [f"COPY repo {WORKSPACE}", f"WORKDIR {WORKSPACE}"]
        variables = [f"{key}={value}" for key, value in pip_env(_CA_PATH if with_ca else None).items()]
        run = ["env", *variables, "bash", "-c", VENV_SCRIPT, "bash", "python3", *pip_arguments(env)]
        lines += [f"RUN {json.dumps(run)}", f"ENV PATH={VENV_BIN}:$PATH VIRTUAL_ENV={VENV}"]
    return "\n".join(lines) + "\n"


def deps_image(
    engine: Engine,
    task: Task,
    tree: str,
    *,
    head: str,
    base_id: str,
    snapshot: Path,
    builds_log: Path,
    labels: Mapping[str, str],
    progress: Progress,
) -> str:
    """Return the tag of the task's environment image, building it once per content hash.

    ``tree`` (the start commit's tree) is part of the hash only when the install may read the repo.

    Raises:
        InfraError: a package cannot be installed (naming it and the command, with pip's or apt's error).
    """
    env = task.spec.environment
    ca = host_ca_bundle()
    with_repo = bool(env.pip) and reads_repo(pip_arguments(env))
    dockerfile = render_deps_dockerfile(head, env, with_repo=with_repo, with_ca=ca is not None)
    key = environment_key(_FORMAT, base_id, dockerfile, tree if with_repo else None)
    tag = f"{DEPS_REPOSITORY}:{key}"
    if engine.image_id(tag):
        return tag
    with engine.lock(f"deps-{key}"):
        if engine.image_id(tag):  # built by another worker while we waited
            return tag
        label = f"environment image {tag} for task {task.name}"
        log = builds_log.parent / f"{key}.log"
        progress(f"building {label} ({describe(env)}); log: {log}")
        started = time.monotonic()
        returncode, output = build_image(
            engine,
            tag,
            dockerfile,
            snapshot=snapshot if with_repo else None,
            files={_CA_FILE: ca.read_bytes()} if ca else {},
            network="host",
            labels=labels,
            label=label,
            log=log,
            progress=progress,
        )
        if returncode != 0:
            raise build_failure(task, output, log)
        seconds = time.monotonic() - started
        record_build(builds_log, tag, task.name, seconds)
        progress(f"built {label} in {seconds:.1f}s")
    return tag


def build_image(
    engine: Engine,
    tag: str,
    dockerfile: str,
    *,
    snapshot: Path | None,
    files: Mapping[str, bytes],
    network: str,
    labels: Mapping[str, str],
    label: str,
    log: Path,
    progress: Progress,
    timeout: float = BUILD_TIMEOUT_SEC,
) -> tuple[int, str]:
    """``docker build`` from a tar context holding exactly the Dockerfile, ``files`` and (with
    ``snapshot``) a fresh clone of the repo as ``repo/``; return (exit code, output)."""
    with tempfile.TemporaryDirectory(prefix="oneshot-build-") as scratch, tempfile.TemporaryFile() as context:
        clone = None
        if snapshot is not None:
            clone = Path(scratch, "repo")
            try:
                git("clone", "-q", "--no-hardlinks", str(snapshot), str(clone))
                git("remote", "remove", "origin", cwd=clone)
            except RuntimeError as exc:
                raise InfraError("sandbox", f"could not copy the repo snapshot {snapshot}: {exc}") from None
        write_context(context, {"Dockerfile": dockerfile.encode(), **files}, clone)
        context.seek(0)
        running = _engine_build(engine, context, tag=tag, network=network, labels=labels)
        return drive_build(running, label=label, log=log, progress=progress, timeout=timeout)


def _engine_build(engine: Engine, context: IO[bytes], *, tag: str, network: str, labels: Mapping[str, str]) -> Running:
    """Start ``docker build`` of a tar context on the engine (the classic builder, as the CLI's
    ``DOCKER_BUILDKIT=0``). The request is made on the SDK's own session rather than with
    ``APIClient.build``, whose stream cannot be cancelled: at the timeout the connection is closed,
    which makes the engine cancel the build."""
    params = {"t": tag, "networkmode": network, "rm": "1", "forcerm": "1", "labels": json.dumps(dict(labels))}
    url = f"{engine.api.base_url}/v{engine.api.api_version}/build"
    headers = {"Content-Type": "application/x-tar"}
    try:
        response = engine.api.post(url, params=params, data=context, headers=headers, stream=True, timeout=None)
    except requests.RequestException as exc:
        raise InfraError("sandbox", f"docker build of {tag}: no answer from {engine.host}: {exc}") from None
    if not response.ok:
        raise InfraError("sandbox", f"docker build of {tag} failed: {response.text.strip()[-500:]}")
    stream = CancellableStream(response.iter_lines(), response)
    errors: list[str] = []

    def read(on_output: OnOutput) -> None:
        for line in stream:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if item.get("error"):
                errors.append(str(item["error"]))
            text = item.get("stream") or (f"{item['error']}\n" if item.get("error") else "")
            on_output(False, text.encode())
        stream.close()

    return Running(
        readers=[read],
        wait=lambda within: True,  # the stream ends with the build
        returncode=lambda: 1 if errors else 0,
        kill_tree=stream.close,
        abandon=stream.close,
    )


def write_context(file: IO[bytes], files: Mapping[str, bytes], repo: Path | None) -> None:
    with tarfile.open(fileobj=file, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        if repo is not None:
            tar.add(repo, arcname="repo")
