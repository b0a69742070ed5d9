"""Task environments: Debian packages plus one ``pip install`` into a venv at :data:`VENV`.

Both sandboxes put the venv at the same path, its ``bin`` first on PATH, so the agent's commands
and the hidden tests run the task's own Python packages (its pinned pytest and plugins included).
The venv is made without ``--system-site-packages``: the task's pins must win, and a dependency the
task forgot must fail the same way in both sandboxes rather than pass locally because the host
happens to have it. An environment is built once per content hash and cached; the build is the
only step that gets network (to reach PyPI and Debian), and it trusts the host's CA bundle, so a
TLS-intercepting proxy (corporate networks, this machine) works. This module holds what both
sandboxes share: the hash, the build scripts, the failure message and a build runner that shows
progress; :mod:`local_env` and :mod:`docker_env` build.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pytest_oneshot.errors import InfraError
from pytest_oneshot.sandbox.process import Running, Sink, drive, run_process
from pytest_oneshot.sandbox.progress import Progress
from pytest_oneshot.task import EnvironmentSpec, Task

VENV = "/opt/oneshot/venv"
VENV_BIN = f"{VENV}/bin"
BUILD_TIMEOUT_SEC = 1800.0
HEARTBEAT_SEC = 30.0
STEP_MARK = "oneshot-step:"
"""Printed by the build scripts before each step, so a failure names the command that failed."""

# `bash -c VENV_SCRIPT bash PYTHON PIP_ARGS...`: the venv, then the task's one pip install (cwd: the repo root).
VENV_SCRIPT = (
    f'set -e; py=$1; shift; echo "{STEP_MARK} pip install $*"; "$py" -m venv {VENV}; '
    f'{VENV_BIN}/python -m pip install --no-cache-dir --no-input --progress-bar off "$@"'
)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # docker colours a step's stderr
_HOST_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
_ARCHIVE = (".whl", ".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz")
_REQUIREMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._, -]*\])?\s*([<>=!~]=?[A-Za-z0-9.*+!, <>=~-]*)?")
_REPO_FREE_OPTIONS = frozenset({"--pre", "--no-deps", "-U", "--upgrade", "--prefer-binary", "--only-binary=:all:"})


def pip_arguments(env: EnvironmentSpec) -> list[str]:
    """The task's pip arguments plus ``pytest``: the hidden tests run with the venv's pytest, and in
    the same resolver run a pin of the task's (``pytest==8.3.4``, in a requirements file) still wins."""
    return [*env.pip, "pytest"]


def reads_repo(pip_args: Sequence[str]) -> bool:
    """Whether the install may read repo files (``-e .``, ``-r file``, a path, an archive).

    Only an install of plain PyPI requirements leaves the repo out of the environment's hash, so
    tasks from one repo at different commits share it; anything else is assumed to read the repo.
    """
    for arg in pip_args:
        if arg in _REPO_FREE_OPTIONS:
            continue
        if not _REQUIREMENT.fullmatch(arg) or arg.lower().endswith(_ARCHIVE):
            return True
    return False


def environment_key(*parts: object) -> str:
    """Content hash of everything an environment is built from."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def host_ca_bundle() -> Path | None:
    """The CA bundle this host trusts (an intercepting proxy's CA included); builds trust it too."""
    for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = os.environ.get(name)
        if value and Path(value).is_file():
            return Path(value)
    return next((Path(path) for path in _HOST_CA_BUNDLES if Path(path).is_file()), None)


def pip_env(ca_bundle: str | None) -> dict[str, str]:
    """pip's environment for a build: no host pip config (both sandboxes resolve alike), the CA trusted."""
    env = {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if ca_bundle:
        env.update(PIP_CERT=ca_bundle, SSL_CERT_FILE=ca_bundle, REQUESTS_CA_BUNDLE=ca_bundle)
    return env


def describe(env: EnvironmentSpec) -> str:
    """Short human summary of an environment for progress lines."""
    parts = []
    if env.system_packages:
        parts.append("apt: " + " ".join(env.system_packages))
    if env.pip:
        parts.append("pip: " + shlex.join(env.pip))
    return "; ".join(parts)


def build_failure(task: Task, output: str, log: Path) -> InfraError:
    """The one-line error for a failed build: the failing command and pip's or apt's own error lines."""
    lines = [line.strip() for line in _ANSI.sub("", output).splitlines() if line.strip()]
    steps = [line for line in lines if line.startswith(STEP_MARK)]
    step = steps[-1].removeprefix(STEP_MARK).strip() if steps else "the environment build"
    after = lines[lines.index(steps[-1]) + 1 :] if steps else lines
    errors = [line for line in after if line.startswith(("ERROR:", "E:"))]
    reason = " | ".join(errors[:2] if errors else after[-3:])[:800]
    if "CERTIFICATE_VERIFY_FAILED" in output:
        reason += " (TLS certificate verification failed: point PIP_CERT or SSL_CERT_FILE at your network's CA bundle)"
    field = "environment.system_packages" if step.startswith("apt-get") else "environment.pip"
    return InfraError("setup", f"{task.paths.meta}: {field}: `{step}` failed: {reason} (build log: {log})")


def record_build(log_path: Path, name: str, task_name: str, seconds: float) -> None:
    """Append ``time<TAB>name<TAB>task<TAB>seconds`` to a builds log: what was built, not reused."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\t{name}\t{task_name}\t{seconds:.1f}\n")


def run_build(
    argv: Sequence[str],
    *,
    label: str,
    log: Path,
    progress: Progress,
    env: Mapping[str, str] | None = None,
    timeout: float = BUILD_TIMEOUT_SEC,
) -> tuple[int, str]:
    """Run a host build command, its output going to ``log``; return (exit code, output).

    Raises:
        InfraError: the build ran past ``timeout`` (its whole tree is killed).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    env = dict(os.environ if env is None else env)
    result = run_process(argv, env=env, output=log, timeout=timeout, heartbeat=_heartbeat(label, log, progress))
    return _built(result.returncode, result.timed_out, label=label, log=log, timeout=timeout)


def drive_build(running: Running, *, label: str, log: Path, progress: Progress, timeout: float) -> tuple[int, str]:
    """:func:`run_build` for a build that runs elsewhere (an engine's), its output read through ``running``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    sink = Sink(log)
    try:
        timed_out = drive(
            running, stdin=None, timeout=timeout, on_output=sink.write, heartbeat=_heartbeat(label, log, progress)
        )
    finally:
        sink.close()
    return _built(running.returncode(), timed_out, label=label, log=log, timeout=timeout)


def _heartbeat(label: str, log: Path, progress: Progress) -> tuple[float, Callable[[float], None]]:
    """Every :data:`HEARTBEAT_SEC` a progress line with the elapsed time and the latest output line,
    so a build that takes minutes is visibly alive."""

    def beat(elapsed: float) -> None:
        with open(log, "rb") as file:
            file.seek(max(file.seek(0, os.SEEK_END) - 4096, 0))
            lines = [line.strip() for line in file.read().decode("utf-8", "replace").splitlines() if line.strip()]
        progress(f"{label}: {elapsed:.0f}s, {lines[-1][:100] if lines else ''}")

    return HEARTBEAT_SEC, beat


def _built(returncode: int, timed_out: bool, *, label: str, log: Path, timeout: float) -> tuple[int, str]:
    if timed_out:
        raise InfraError("setup", f"{label} took over {timeout:.0f}s (build log: {log})")
    return returncode, log.read_text("utf-8", "replace")
