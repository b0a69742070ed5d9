"""The Docker engine and the offline base image the docker sandbox builds on.

No registry is reachable where this runs, so nothing is pulled: the engine is whichever
one answers (``DOCKER_HOST``, the default socket) or, as root, a private ``dockerd`` we
start ourselves, and the base image is built from Debian packages with debootstrap. Both
are shared by every pytest process on the host, so starting and building are file-locked.
Every engine call goes through the docker SDK's API client of the engine that answered (no
docker CLI is needed); ``os.environ`` is never touched.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from contextlib import AbstractContextManager
from functools import cache
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.utils import kwargs_from_env

from pytest_oneshot.errors import InfraError, SandboxUnavailableError
from pytest_oneshot.sandbox.progress import Progress, file_lock, stderr_progress

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
OWN_ROOT = Path(os.environ.get("ONESHOT_DOCKERD_ROOT", "/var/lib/oneshot-docker"))
"""Our private engine's state: data root, exec root, socket, pid and log files."""
BASE_IMAGE = "oneshot-base:bookworm"
BASE_PACKAGES = ("python3", "python-is-python3", "python3-pytest", "git", "ca-certificates")
_PACKAGES_LABEL = "oneshot.base.packages"  # a base built from another package list is rebuilt
ENGINE_START_TIMEOUT_SEC = 60.0
_PROBE_TIMEOUT_SEC = 10.0
CALL_TIMEOUT_SEC = 120.0
"""Longest wait for one engine call's answer (a stream's reads have none: its own timeout applies)."""
_DEBOOTSTRAP_PHASE = re.compile(
    rb"I: (Retrieving (InRelease|Packages)|Resolving|Installing"
    rb"|Unpacking (required|the base)|Configuring (required|the base)|Base system)"
)  # the phase lines of debootstrap's output; per-package lines go to the log only


class Engine:
    """A Docker engine that answered; :attr:`api` (the docker SDK's low-level client) talks to it and to no other."""

    def __init__(self, host: str, api: docker.APIClient) -> None:
        self.host = host
        self.api = api

    @classmethod
    def connect(cls, host: str, **client_kwargs: object) -> Engine | None:
        """The engine at ``host`` if it answers (the API version is agreed on then), else None."""
        try:
            api = docker.APIClient(base_url=host, version="auto", timeout=_PROBE_TIMEOUT_SEC, **client_kwargs)
        except docker.errors.DockerException:
            return None
        api.timeout = CALL_TIMEOUT_SEC
        return cls(host, api)

    def lock(self, name: str) -> AbstractContextManager[None]:
        """A host-wide lock per engine and ``name``: images live in the engine, not in a cache dir."""
        engine_key = hashlib.sha256(self.host.encode()).hexdigest()[:12]
        return file_lock(Path(tempfile.gettempdir(), "oneshot-docker-locks", engine_key, f"{name}.lock"))

    def image(self, name: str) -> dict[str, Any] | None:
        """The image's inspect record, or None when the engine has no such image."""
        try:
            found: dict[str, Any] = self.api.inspect_image(name)
        except docker.errors.NotFound:
            return None
        return found

    def image_id(self, name: str) -> str | None:
        found = self.image(name)
        return None if found is None else str(found["Id"])


def api_error(what: str, exc: docker.errors.APIError) -> InfraError:
    """The one-line error for an engine call that failed: what we asked, and the engine's own words."""
    return InfraError("sandbox", f"{what} failed: {exc.explanation or exc}"[-500:])


def own_socket() -> str:
    return f"unix://{OWN_ROOT / 'docker.sock'}"


def engine_log() -> Path:
    return OWN_ROOT / "dockerd.log"


@cache
def ensure_engine(start: bool = True) -> Engine:
    """Return an engine that answers, starting our own ``dockerd`` if needed and allowed.

    Raises:
        SandboxUnavailableError: ``DOCKER_HOST`` does not answer, or no engine answers and one
            cannot be started here (not root, no dockerd, it failed to start).
    """
    if os.environ.get("DOCKER_HOST"):
        kwargs = kwargs_from_env()  # DOCKER_TLS_VERIFY and DOCKER_CERT_PATH too
        host = kwargs.pop("base_url")
        engine = Engine.connect(host, **kwargs)
        if engine is not None:
            return engine
        raise SandboxUnavailableError(f"DOCKER_HOST={host} does not answer; start that engine or unset DOCKER_HOST")
    for host in (DEFAULT_SOCKET, own_socket()):
        engine = Engine.connect(host)
        if engine is not None:
            return engine
    if not start:
        raise SandboxUnavailableError(
            f"no Docker engine answers at {DEFAULT_SOCKET} or {own_socket()}; run `oneshot docker engine start`"
        )
    return _start_engine()


def _start_engine() -> Engine:
    dockerd = shutil.which("dockerd")
    if os.geteuid() != 0 or dockerd is None:
        why = "not running as root" if dockerd else "dockerd is not installed"
        raise SandboxUnavailableError(
            f"no Docker engine answers at {DEFAULT_SOCKET} and one cannot be started here ({why}); "
            "start one (`dockerd` as root, `apt-get install docker.io`) or set DOCKER_HOST"
        )
    host = own_socket()
    with file_lock(OWN_ROOT / "engine.lock"):
        engine = Engine.connect(host)
        if engine is not None:  # another process started it while we waited for the lock
            return engine
        log = engine_log()
        argv = [
            dockerd,
            f"--host={host}",
            f"--data-root={OWN_ROOT / 'data'}",
            f"--exec-root={OWN_ROOT / 'exec'}",
            f"--pidfile={OWN_ROOT / 'dockerd.pid'}",
            "--bridge=none",
            "--iptables=false",
            "--ip-forward=false",
        ]
        with open(log, "ab") as sink:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, start_new_session=True)
        deadline = time.monotonic() + ENGINE_START_TIMEOUT_SEC
        while time.monotonic() < deadline:
            engine = Engine.connect(host)
            if engine is not None:
                return engine
            if proc.poll() is not None:
                raise SandboxUnavailableError(f"dockerd exited with status {proc.returncode} while starting; see {log}")
            time.sleep(0.5)
        raise SandboxUnavailableError(f"dockerd did not answer within {ENGINE_START_TIMEOUT_SEC:.0f}s; see {log}")


def apt_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror URI this machine installs from (deb822 ``.sources`` or ``sources.list``)."""
    candidates: list[str] = []
    for path in sorted((sources_dir / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.MULTILINE))
            suites = fields.get("Suites", "").split()
            if "bookworm" in suites and "deb" in fields.get("Types", "").split():
                candidates += fields.get("URIs", "").split()
    for path in [sources_dir / "sources.list", *sorted((sources_dir / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            for match in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s", path.read_text(), re.MULTILINE):
                candidates.append(match.group(1))
    if not candidates:
        raise SandboxUnavailableError(
            f"{sources_dir}: no `bookworm` apt source found to debootstrap the base image from"
        )
    return candidates[0]


def ensure_base_image(engine: Engine, name: str = BASE_IMAGE, progress: Progress = stderr_progress) -> str:
    """Return the id of ``name``, building it with debootstrap the first time (about 80 s).

    Raises:
        SandboxUnavailableError: debootstrap is missing, we are not root, or the build failed.
    """
    found = _current_base(engine, name)
    if found:
        return found
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None or os.geteuid() != 0:
        why = "debootstrap is not installed (`apt-get install debootstrap`)" if debootstrap is None else "it needs root"
        raise SandboxUnavailableError(
            f"docker image {name} is missing and cannot be built here: {why}; "
            "build it with `oneshot docker base` as root"
        )
    with engine.lock("base-image"):
        return _current_base(engine, name) or _build_base_image(engine, name, debootstrap, progress)


def _current_base(engine: Engine, name: str) -> str | None:
    """The id of ``name`` if it exists and was built from today's package list."""
    found = engine.image(name)
    labels = ((found or {}).get("Config") or {}).get("Labels") or {}
    return str(found["Id"]) if found and labels.get(_PACKAGES_LABEL) == ",".join(BASE_PACKAGES) else None


def _build_base_image(engine: Engine, name: str, debootstrap: str, progress: Progress) -> str:
    mirror = apt_mirror()
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="oneshot-rootfs-", dir=OWN_ROOT if os.access(OWN_ROOT, os.W_OK) else None))
    log = scratch.with_suffix(".log")
    try:
        progress(f"building docker image {name}: debootstrap bookworm from {mirror} (about 80 s; log: {log})")
        argv = [
            debootstrap,
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            "bookworm",
            str(scratch / "rootfs"),
            mirror,
        ]
        with open(log, "wb") as sink:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            assert proc.stdout is not None
            for line in proc.stdout:
                sink.write(line)
                if _DEBOOTSTRAP_PHASE.match(line):
                    progress(line.decode("utf-8", "replace").strip())
            if proc.wait() != 0:
                raise SandboxUnavailableError(f"debootstrap failed (exit {proc.returncode}); see {log}")
        progress(f"importing the root filesystem as {name}")
        _import(engine, scratch / "rootfs", name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    progress(f"built {name} in {time.monotonic() - started:.0f}s")
    log.unlink(missing_ok=True)
    image = _current_base(engine, name)
    assert image is not None
    return image


def _import(engine: Engine, rootfs: Path, name: str) -> None:
    """``docker import`` of ``rootfs``, streamed as a tar to the engine."""
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert tar.stdout is not None
    repository, _, tag = name.rpartition(":") if ":" in name.rpartition("/")[2] else (name, "", "latest")
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["bash"]',
        f"LABEL {_PACKAGES_LABEL}={','.join(BASE_PACKAGES)}",
    ]
    try:
        chunks = iter(lambda: tar.stdout.read(1 << 20), b"")  # type: ignore[union-attr]
        answer = engine.api.import_image(src=chunks, repository=repository, tag=tag, changes=changes, stream_src=True)
    except docker.errors.APIError as exc:
        raise SandboxUnavailableError(f"docker import of {name} failed: {exc.explanation or exc}") from None
    finally:
        tar.stdout.close()
        error = tar.stderr.read().decode("utf-8", "replace").strip() if tar.stderr else ""
        tar.wait()
    if tar.returncode != 0 or '"error"' in str(answer):
        raise SandboxUnavailableError(f"docker import of {name} failed: {error or answer}"[-500:])


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``oneshot docker engine [start|status]`` and ``oneshot docker base [--image NAME]``."""
    parser = subparsers.add_parser("docker", help="Docker engine and base image for --oneshot-sandbox=docker")
    commands = parser.add_subparsers(dest="docker_command", required=True, metavar="COMMAND")
    engine = commands.add_parser("engine", help="Start a Docker engine if none answers, or show which one answers")
    engine.add_argument("action", choices=["start", "status"], nargs="?", default="status")
    engine.set_defaults(func=_cmd_engine)
    base = commands.add_parser("base", help="Build the offline base image with debootstrap (once), then show it")
    base.add_argument("--image", default=BASE_IMAGE, help=f"Image name to build or show (default {BASE_IMAGE})")
    base.set_defaults(func=_cmd_base)


def _cmd_engine(args: argparse.Namespace) -> int:
    engine = ensure_engine(start=args.action == "start")
    version = engine.api.version()["Version"]
    print(f"docker engine {version} at {engine.host}")
    return 0


def _cmd_base(args: argparse.Namespace) -> int:
    engine = ensure_engine()
    image = ensure_base_image(engine, args.image, progress=print)
    print(f"{args.image} {image}")
    return 0
