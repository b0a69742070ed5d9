"""The Docker engine and the offline base image the docker sandbox builds on.

No registry is reachable where this runs, so nothing is pulled: the engine is whichever
one answers (``DOCKER_HOST``, the default socket) or, as root, a private ``dockerd`` we
start ourselves, and the base image is built from Debian packages with debootstrap. Both
are shared by every pytest process on the host, so starting and building are file-locked.
Every docker call names its engine with ``--host``; ``os.environ`` is never touched.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pytest_oneshot.errors import InfraError, SandboxUnavailableError

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
OWN_ROOT = Path(os.environ.get("ONESHOT_DOCKERD_ROOT", "/var/lib/oneshot-docker"))
"""Our private engine's state: data root, exec root, socket, pid and log files."""
BASE_IMAGE = "oneshot-base:bookworm"
BASE_PACKAGES = ("python3", "python-is-python3", "python3-pytest", "git", "ca-certificates")
_PACKAGES_LABEL = "oneshot.base.packages"  # a base built from another package list is rebuilt
ENGINE_START_TIMEOUT_SEC = 60.0
_PROBE_TIMEOUT_SEC = 10.0
_DEBOOTSTRAP_PHASE = re.compile(
    rb"I: (Retrieving (InRelease|Packages)|Resolving|Installing"
    rb"|Unpacking (required|the base)|Configuring (required|the base)|Base system)"
)  # the phase lines of debootstrap's output; per-package lines go to the log only

Progress = Callable[[str], None]


_progress_guard: list[Callable[[], AbstractContextManager[object]]] = [contextlib.nullcontext]


def show_progress_through(guard: Callable[[], AbstractContextManager[object]]) -> None:
    """Wrap each progress line in ``guard``: pytest's capture suspension, so builds show progress without -s."""
    _progress_guard[0] = guard


def stderr_progress(line: str) -> None:
    with _progress_guard[0]():
        print(f"oneshot: {line}", file=sys.stderr, flush=True)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock shared by threads and processes (xdist workers) on this host."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass(frozen=True)
class Engine:
    """A Docker engine that answered; ``run`` talks to it and to no other."""

    host: str
    cli: str

    def argv(self, *args: str) -> list[str]:
        return [self.cli, "--host", self.host, *args]

    def run(
        self,
        *args: str,
        input: bytes | None = None,
        timeout: float | None = 120.0,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run one docker CLI command; with ``check``, a failure raises InfraError with docker's message."""
        try:
            proc = subprocess.run(
                self.argv(*args),
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                env=cli_env(env),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise InfraError(
                "sandbox", f"`docker {args[0]}` did not answer within {timeout:.0f}s ({self.host})"
            ) from None
        if check and proc.returncode != 0:
            message = proc.stderr.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
            raise InfraError("sandbox", f"`docker {' '.join(args[:2])}` failed: {message[-500:]}")
        return proc

    def answers(self) -> bool:
        try:
            return (
                self.run(
                    "version", "--format", "{{.Server.Version}}", timeout=_PROBE_TIMEOUT_SEC, check=False
                ).returncode
                == 0
            )
        except InfraError:
            return False

    def lock(self, name: str) -> AbstractContextManager[None]:
        """A host-wide lock per engine and ``name``: images live in the engine, not in a cache dir."""
        engine_key = hashlib.sha256(self.host.encode()).hexdigest()[:12]
        return file_lock(Path(tempfile.gettempdir(), "oneshot-docker-locks", engine_key, f"{name}.lock"))

    def image_id(self, image: str) -> str | None:
        proc = self.run("image", "inspect", "--format", "{{.Id}}", image, check=False)
        return proc.stdout.decode().strip() if proc.returncode == 0 else None


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The docker client's own environment: enough to find its config, plus ``extra``.

    ``DOCKER_HOST`` is dropped because the engine is always given with ``--host``;
    ``extra`` carries values for ``docker exec -e NAME`` so secrets never sit in an argv.
    """
    keep = ("PATH", "HOME", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "LANG")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env["DOCKER_BUILDKIT"] = "0"  # the classic builder ships with the engine; buildx may be absent
    return {**env, **(extra or {})}


def own_socket() -> str:
    return f"unix://{OWN_ROOT / 'docker.sock'}"


def engine_log() -> Path:
    return OWN_ROOT / "dockerd.log"


@cache
def ensure_engine(start: bool = True) -> Engine:
    """Return an engine that answers, starting our own ``dockerd`` if needed and allowed.

    Raises:
        SandboxUnavailableError: no docker CLI, ``DOCKER_HOST`` does not answer, or no engine
            answers and one cannot be started here (not root, no dockerd, it failed to start).
    """
    cli = shutil.which("docker")
    if cli is None:
        raise SandboxUnavailableError("the docker CLI is not installed; install it with `apt-get install docker.io`")
    if os.environ.get("DOCKER_HOST"):
        engine = Engine(os.environ["DOCKER_HOST"], cli)
        if engine.answers():
            return engine
        raise SandboxUnavailableError(
            f"DOCKER_HOST={engine.host} does not answer; start that engine or unset DOCKER_HOST"
        )
    for host in (DEFAULT_SOCKET, own_socket()):
        if Engine(host, cli).answers():
            return Engine(host, cli)
    if not start:
        raise SandboxUnavailableError(
            f"no Docker engine answers at {DEFAULT_SOCKET} or {own_socket()}; run `oneshot docker engine start`"
        )
    return _start_engine(cli)


def _start_engine(cli: str) -> Engine:
    dockerd = shutil.which("dockerd")
    if os.geteuid() != 0 or dockerd is None:
        why = "not running as root" if dockerd else "dockerd is not installed"
        raise SandboxUnavailableError(
            f"no Docker engine answers at {DEFAULT_SOCKET} and one cannot be started here ({why}); "
            "start one (`dockerd` as root, `apt-get install docker.io`) or set DOCKER_HOST"
        )
    engine = Engine(own_socket(), cli)
    with file_lock(OWN_ROOT / "engine.lock"):
        if engine.answers():  # another process started it while we waited for the lock
            return engine
        log = engine_log()
        argv = [
            dockerd,
            f"--host={engine.host}",
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
            if engine.answers():
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
    template = f'{{{{.Id}}}} {{{{index .Config.Labels "{_PACKAGES_LABEL}"}}}}'
    proc = engine.run("image", "inspect", "--format", template, name, check=False)
    image, _, packages = proc.stdout.decode().strip().partition(" ")
    return image if proc.returncode == 0 and packages == ",".join(BASE_PACKAGES) else None


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
        tar = subprocess.Popen(["tar", "-C", str(scratch / "rootfs"), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            engine.argv(
                "import",
                "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change", "ENV LANG=C.UTF-8",
                "--change", 'CMD ["bash"]',
                "--change", f"LABEL {_PACKAGES_LABEL}={','.join(BASE_PACKAGES)}",
                "-", name,
            ),
            stdin=tar.stdout,
            capture_output=True,
            env=cli_env(),
            check=False,
        )  # fmt: skip
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise SandboxUnavailableError(
                f"docker import of {name} failed: {imported.stderr.decode(errors='replace').strip()}"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    progress(f"built {name} in {time.monotonic() - started:.0f}s")
    log.unlink(missing_ok=True)
    image = _current_base(engine, name)
    assert image is not None
    return image


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
    version = engine.run("version", "--format", "{{.Server.Version}}").stdout.decode().strip()
    print(f"docker engine {version} at {engine.host}")
    return 0


def _cmd_base(args: argparse.Namespace) -> int:
    engine = ensure_engine()
    image = ensure_base_image(engine, args.image, progress=print)
    print(f"{args.image} {image}")
    return 0
