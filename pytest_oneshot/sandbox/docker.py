"""The docker sandbox: one container per trial, from an image of the task's environment.

The image holds the repo at its start commit and the setup already run, and its tag is a
hash of everything that goes into it, so an unchanged task never rebuilds and tasks that
share an environment share an image. Its build context is the repo and a generated
Dockerfile only: nothing of the answer (reference diff, notes, hidden tests, tb_meta.json)
and no secret can reach a layer. Containers carry their owner (host, boot, pid) in labels
so a later run can remove the ones a killed run left behind (:func:`reap`). Commands reach a
container through its exec server (:mod:`execd`, a few ms each), or ``docker exec`` (~65 ms)
when the image has no python3 to run it.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, final

from typing_extensions import override

from pytest_oneshot.errors import InfraError, SandboxUnavailableError
from pytest_oneshot.owner import Owner
from pytest_oneshot.repo import default_cache_dir, git
from pytest_oneshot.sandbox import ExecResult, Sandbox, SandboxSpec, execd
from pytest_oneshot.sandbox.archive import archive_by_exec, archive_from_command
from pytest_oneshot.sandbox.docker_env import build_image, deps_image, needs_image
from pytest_oneshot.sandbox.dockerd import (
    BASE_IMAGE,
    Engine,
    Progress,
    cli_env,
    ensure_base_image,
    ensure_engine,
    stderr_progress,
)
from pytest_oneshot.sandbox.environment import record_build
from pytest_oneshot.task import Task

WORKSPACE = "/workspace"
IMAGE_REPOSITORY = "oneshot-env"
_IMAGE_FORMAT = "1"  # bump when the generated Dockerfile changes shape: every image rebuilds
_LABEL = "oneshot"
_SANDBOX_ENV = {
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TMPDIR": "/tmp",
    "PYTHONDONTWRITEBYTECODE": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "ONESHOT_IN_SANDBOX": "1",
}  # the same base environment as the local sandbox; the host's is never passed in
_KILL_GRACE_SEC = 10.0
SETUP_TIMEOUT_SEC = 900.0  # per setup command, as in the local sandbox
_FILE_TIMEOUT_SEC = 60.0
_SERVER_START_SEC = 10.0
_SERVER_SCRIPT = "/oneshot/execd.py"
_SERVER_DIR = "/oneshot/run"
_NO_SERVER = "no-server"
_SERVER_HOME_PREFIX = "oneshot-execd-"
_SERVER_HOME_LABEL = f"{_LABEL}.execd.home"  # so reap() removes the socket dir of a killed run too
# The container's main process: the exec server (:mod:`execd`) when the image's python3 can run
# it; otherwise, or once it is gone, a sleep that keeps the container up for ``docker exec``.
_MAIN = f"python3 -I -S {_SERVER_SCRIPT} {_SERVER_DIR}; : >{_SERVER_DIR}/{_NO_SERVER}; exec sleep infinity"

# Without the server (below), commands run through ``docker exec``:

# `sh -c _LAUNCH sh _RECORD PIDFILE CMD...`: CMD writes its pid and /proc stat line (start
# time) to PIDFILE, so a timeout can find its whole tree, and runs as the leader of a new
# session when the image has setsid (as a child, which is never a group leader, so setsid
# need not fork).
_RECORD = 'read -r s </proc/$$/stat; echo "$$ $s" >"$0"; exec "$@"'
_LAUNCH = (
    'r=$1 p=$2; shift 2; if command -v setsid >/dev/null 2>&1; then setsid sh -c "$r" "$p" "$@"; exit $?; fi; '
    'exec sh -c "$r" "$p" "$@"'
)
# `sh -c _KILL_TREE sh PIDFILE`: stop ROOT's launcher and every process below ROOT, in its session, or orphaned
# (reparented to init) since ROOT started, so no parent dies before its children are
# found; then kill them all. POSIX sh and /proc only, as the image may be anyone's.
_KILL_TREE = r"""
read -r root line 2>/dev/null <"$1" || exit 0
set -- ${line##*") "}; since=${20}; all=" $root "
[ "$2" -gt 1 ] && all=" $2$all"  # our launcher shell: dying first, it reports nothing
kill -STOP $all 2>/dev/null
changed=1
while [ -n "$changed" ]; do
  changed=
  for f in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null <"$f" || continue
    pid=${line%% *}
    set -- ${line##*") "}
    case "$all" in *" $pid "*) continue ;; esac
    case "$all" in
      *" $2 "*) ;;
      *) [ "$4" = "$root" ] || { [ "$2" = 1 ] && [ "${20}" -ge "$since" ]; } || continue ;;
    esac
    all="$all$pid "; kill -STOP "$pid" 2>/dev/null; changed=1
  done
done
kill -KILL $all 2>/dev/null
exit 0
"""
# `sh -c _WRITE sh WORKSPACE RELPATH` with the data on stdin: walk down from the workspace,
# replacing any symlink or file on the way with a real directory, so the write stays inside.
_WRITE = r"""
set -e
cd -P "$1"; rel=$2; name=${rel##*/}; dir=
case "$rel" in */*) dir=${rel%/*} ;; esac
IFS=/; set -f
for part in $dir; do
  if [ -L "$part" ] || { [ -e "$part" ] && [ ! -d "$part" ]; }; then rm -f -- "$part"; fi
  [ -d "$part" ] || mkdir -- "$part"
  cd -- "$part"
done
if [ -L "$name" ] || [ -d "$name" ]; then rm -rf -- "$name"; fi
cat >"$name"
"""
# `sh -c _READ sh WORKSPACE ABSPATH`: exit 3 = symlink or outside the workspace, 4 = missing, 5 = directory.
_READ = r"""
[ -L "$2" ] && exit 3
[ -e "$2" ] || exit 4
case "$(readlink -f -- "$2")" in "$1"/*) ;; *) exit 3 ;; esac
[ -d "$2" ] && exit 5
exec cat -- "$2"
"""


def reap(engine: Engine | None = None) -> list[str]:
    """Remove the containers whose owner process is dead (a SIGKILLed or crashed run); return their ids.

    Called at session start; containers of live runs, other hosts, or without owner labels are left alone.
    """
    engine = engine or ensure_engine()
    ids = engine.run("ps", "-aq", "--no-trunc", "--filter", f"label={_LABEL}.owner.pid").stdout.decode().split()
    if not ids:
        return []
    inspected = engine.run(
        "inspect", "--type", "container", "--format", "{{.Id}} {{json .Config.Labels}}", *ids, check=False
    )
    dead, homes = [], []
    for container, labels in _labels_by_container(inspected.stdout.decode("utf-8", "replace")).items():
        owner = Owner.from_labels(labels)
        if owner is not None and owner.is_dead():
            dead.append(container)
            homes.append(Path(labels.get(_SERVER_HOME_LABEL, "/nonexistent")))
    if dead:
        engine.run("rm", "-f", "-v", *dead, check=False)
    for home in homes:
        if home.name.startswith(_SERVER_HOME_PREFIX) and home.is_dir() and not home.is_symlink():
            shutil.rmtree(home, ignore_errors=True)
    return dead


def _labels_by_container(inspect_output: str) -> dict[str, dict[str, str]]:
    """Parse ``{{.Id}} {{json .Config.Labels}}`` lines. A container removed since it was listed (by its
    own run, or another session's reaper) prints an empty line and an error: it is simply gone."""
    found: dict[str, dict[str, str]] = {}
    for line in inspect_output.splitlines():
        container, _, text = line.strip().partition(" ")
        try:
            labels = json.loads(text) if container else None
        except ValueError:
            continue
        if isinstance(labels, dict):
            found[container] = {str(key): str(value) for key, value in labels.items()}
    return found


def builds_log(cache_dir: Path | None = None) -> Path:
    """One line per environment image actually built: ``time<TAB>tag<TAB>task<TAB>seconds``."""
    return (cache_dir or default_cache_dir()) / "docker" / "builds.log"


def _head(task: Task, base_image: str) -> str:
    env = task.spec.environment
    return (task.paths.root / env.dockerfile).read_text() if env.dockerfile else f"FROM {base_image}\n"


def render_dockerfile(task: Task, base_image: str, *, on_environment: bool = False) -> str:
    """The task's own Dockerfile (or ``FROM base_image``) followed by the repo, git identity and setup.

    ``on_environment``: ``base_image`` is the task's environment image, which holds its Dockerfile already.
    """
    env = task.spec.environment
    head = f"FROM {base_image}\n" if on_environment else _head(task, base_image)
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
            head=_head(task, base_image),
            base_id=base_id,
            snapshot=snapshot,
            builds_log=log_path,
            labels={f"{_LABEL}.task": task.name},
            progress=progress,
        )
        base_id = engine.image_id(base_image) or base_image
    dockerfile = render_dockerfile(task, base_image, on_environment=needs_image(env))
    content = json.dumps([_IMAGE_FORMAT, base_id, dockerfile, head, tree])
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
    """``docker build``, offline, from a context of exactly the Dockerfile and a fresh clone of the snapshot."""
    timeout = SETUP_TIMEOUT_SEC * max(1, len(task.spec.environment.setup))
    label = f"docker image {tag} for task {task.name}"
    returncode, output = build_image(
        engine,
        tag,
        dockerfile,
        snapshot=snapshot,
        files={},
        network="none",
        labels={f"{_LABEL}.task": task.name},
        label=label,
        log=log,
        progress=progress,
        timeout=timeout,
    )
    if returncode != 0:
        tail = " | ".join(line for line in output.strip().splitlines()[-6:] if line.strip())
        raise InfraError("setup", f"building the docker image for task {task.name} failed: {tail}")


@final
class DockerSandbox(Sandbox):
    """One trial in its own container of the task's environment image.

    Commands go to the container's exec server over a unix socket in a per-container host dir
    (:mod:`execd`), or through ``docker exec`` when the image cannot run the server: decided at
    :meth:`start`, and for good whenever the server stops being the one started with the container.
    """

    def __init__(self, spec: SandboxSpec, *, base_image: str | None = None, cache_dir: Path | None = None) -> None:
        self.spec = spec
        self.base_image = base_image or spec.options.get("docker_image") or BASE_IMAGE
        self.cache_dir = cache_dir or (Path(spec.options["cache_dir"]) if spec.options.get("cache_dir") else None)
        self.workdir = str(PurePosixPath(WORKSPACE, spec.task.spec.repo.subdir))
        safe = re.sub(r"[^a-zA-Z0-9_.-]+", "-", spec.trial_id).strip("-.")[:80]
        self.name = f"oneshot-{safe}-{hashlib.sha256(spec.trial_id.encode()).hexdigest()[:8]}"
        self.image: str | None = None
        self._engine: Engine | None = None
        self._server_home: Path | None = None
        self._server: execd.Client | None = None

    @staticmethod
    def cleanup_stale(options: Mapping[str, str]) -> list[str]:
        """Session start: remove the containers of runs that died (see :func:`reap`)."""
        del options  # containers are found by their owner labels, whatever image they run
        return reap()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = ensure_engine()
        return self._engine

    @property
    def uses_server(self) -> bool:
        """Whether commands go to the exec server (else ``docker exec``)."""
        return self._server is not None

    @override
    def start(self) -> None:
        spec = self.spec
        self.image = environment_image(
            self.engine, spec.task, spec.repo_snapshot, base_image=self.base_image, cache_dir=self.cache_dir
        )
        # The server's socket dir is the only writable host path in the container. Its parent stays
        # private (0700), so nothing container root puts there (a setuid file) reaches other host users.
        self._server_home = Path(tempfile.mkdtemp(prefix=_SERVER_HOME_PREFIX))
        socket_dir = self._server_home / "run"
        socket_dir.mkdir()
        labels = {
            f"{_LABEL}.run_id": spec.run_id,
            f"{_LABEL}.trial": spec.trial_id,
            _SERVER_HOME_LABEL: str(self._server_home),
            **Owner.current().labels(),
        }
        argv = ["run", "-d", "--name", self.name, "--init", "--entrypoint", "sh", "-w", self.workdir]
        # When tests.setup may run the agent's code before pytest, the scoring container's system is
        # read-only, so it cannot change the python, plugins or shell under the tests; the workspace
        # is then an anonymous volume seeded from the image (removed with the container; ~0.3 s more
        # to start a mid-sized repo), HOME and /tmp are scratch. Otherwise the workspace lives in the
        # container's own layer. The agent's container may change its own system: only the repo's
        # files leave it, read once its processes are stopped.
        argv += ["--tmpfs", "/tmp:exec"]
        if spec.protect_system:
            argv += ["--read-only", "--volume", WORKSPACE, "--tmpfs", "/root", "--tmpfs", "/run"]
        argv += ["--network", "host" if spec.network == "loopback" else "none"]
        argv += ["--cpus", f"{spec.cpus:g}", "--memory", f"{spec.memory_mb}m", "--memory-swap", f"{spec.memory_mb}m"]
        for key, value in {**labels, **_SANDBOX_ENV}.items():
            argv += ["--label" if key in labels else "--env", f"{key}={value}"]
        mounts = {Path(execd.__file__): (_SERVER_SCRIPT, True), socket_dir: (_SERVER_DIR, False)}
        mounts.update({Path(host): (target, True) for host, target in spec.mounts.items()})
        for host_path, (sandbox_path, readonly) in mounts.items():
            fields = ["type=bind", f"source={host_path.resolve()}", f"target={sandbox_path}"]
            argv += ["--mount", _csv([*fields, "readonly"] if readonly else fields)]
        _live.add(self)
        self.engine.run(*argv, self.image, "-c", _MAIN)
        self._server = self._attach_server(socket_dir)

    def _attach_server(self, socket_dir: Path) -> execd.Client | None:
        """The exec server's client once it listens, or None when the image cannot run it."""
        deadline = time.monotonic() + _SERVER_START_SEC
        while time.monotonic() < deadline:
            if (socket_dir / execd.SOCKET_NAME).exists():
                try:
                    return execd.Client.attach(str(socket_dir / execd.SOCKET_NAME))
                except execd.ServerLost:
                    return None
            if (socket_dir / _NO_SERVER).exists():
                return None
            time.sleep(0.005)
        if not self._running():
            raise InfraError("sandbox", f"container {self.name} exited at start; see `docker logs {self.name}`")
        return None  # the engine does not share this host's files: docker exec works all the same

    @override
    def exec(
        self,
        cmd: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | None = None,
        output: Path | None = None,
    ) -> ExecResult:
        server = self._server
        if server is not None:
            try:
                return self._server_exec(server, cmd, timeout, env or {}, cwd or self.workdir, stdin, output)
            except execd.ServerLost:
                self._server = None  # killed or replaced (by the agent): docker exec from now on
        return self._docker_exec(cmd, timeout, env or {}, cwd or self.workdir, stdin, output)

    def _server_exec(
        self,
        server: execd.Client,
        cmd: Sequence[str],
        timeout: float | None,
        env: Mapping[str, str],
        cwd: str,
        stdin: bytes | None,
        output: Path | None,
    ) -> ExecResult:
        started = time.monotonic()
        captured: dict[bool, list[bytes]] = {False: [], True: []}
        sink = open(output, "ab", buffering=0) if output else None  # noqa: SIM115 - closed below

        def on_output(is_stderr: bool, data: bytes) -> None:
            if sink is not None:
                sink.write(data)
            else:
                captured[is_stderr].append(data)

        wait = None if timeout is None else timeout + 2 * _KILL_GRACE_SEC
        try:
            end = server.run(
                cmd,
                env=env,
                cwd=cwd,
                timeout=timeout,
                stdin=stdin,
                merge=sink is not None,
                on_output=on_output,
                wait=wait,
            )
        except ConnectionError as exc:
            # Killed mid-command by a process in the container (the agent's, or its code under the
            # tests): the command's fate is unknown, so it failed; the sandbox itself still runs.
            self._server = None
            self._raise_if_gone()
            message = f"the exec server in {self.name} was lost mid-command: {exc}\n".encode()
            return ExecResult(255, b"", message, False, time.monotonic() - started)
        finally:
            if sink is not None:
                sink.close()
        stdout, stderr = b"".join(captured[False]), b"".join(captured[True])
        return ExecResult(end.returncode, stdout, stderr, end.timed_out, time.monotonic() - started)

    def _docker_exec(
        self,
        cmd: Sequence[str],
        timeout: float | None,
        env: Mapping[str, str],
        cwd: str,
        stdin: bytes | None,
        output: Path | None,
    ) -> ExecResult:
        pidfile = f"/tmp/.oneshot-exec-{uuid.uuid4().hex}.pid"
        argv = self.engine.argv("exec", "-w", cwd, *(["-i"] if stdin is not None else []))
        for name in env:
            argv += ["-e", name]  # the value travels in the client's environment, never in an argv
        argv += [self.name, "sh", "-c", _LAUNCH, "sh", _RECORD, pidfile, *cmd]
        started = time.monotonic()
        sink = open(output, "ab") if output else subprocess.PIPE  # noqa: SIM115 - closed below
        try:
            proc = subprocess.Popen(
                argv,
                env=cli_env(env),
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT if output else subprocess.PIPE,
            )
            timed_out = False
            try:
                stdout, stderr = proc.communicate(stdin, timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                self._kill_tree(pidfile)
                try:
                    stdout, stderr = proc.communicate(timeout=_KILL_GRACE_SEC)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    stdout, stderr = proc.communicate()
            except BaseException:  # Ctrl-C: the client dies with us, so end the command in the container too
                self._kill_tree(pidfile)
                proc.kill()
                raise
        finally:
            if output:
                sink.close()  # type: ignore[union-attr]
        if proc.returncode != 0 and not timed_out:  # docker's own errors exit 1 too
            self._raise_if_gone()
        return ExecResult(proc.returncode, stdout or b"", stderr or b"", timed_out, time.monotonic() - started)

    def _kill_tree(self, pidfile: str) -> None:
        self.engine.run("exec", self.name, "sh", "-c", _KILL_TREE, "sh", pidfile, check=False, timeout=30)

    def _running(self) -> bool:
        proc = self.engine.run("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return proc.stdout.strip() == b"true"

    def _raise_if_gone(self) -> None:
        if not self._running():
            raise InfraError(
                "sandbox", f"container {self.name} is not running (removed, or killed by the memory limit)"
            )

    def _path(self, path: str) -> str:
        relative = PurePosixPath(path)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise PermissionError(f"{path}: sandbox paths must be relative to the workdir")
        return str(PurePosixPath(self.spec.task.spec.repo.subdir, relative))

    @override
    def write_file(self, path: str, data: bytes) -> None:
        relative = self._path(path)
        result = self.exec(["sh", "-c", _WRITE, "sh", WORKSPACE, relative], stdin=data, timeout=_FILE_TIMEOUT_SEC)
        if not result.ok:
            raise InfraError("sandbox", f"could not write {path} in {self.name}: {result.text().strip()}")

    @override
    def read_file(self, path: str) -> bytes:
        target = f"{WORKSPACE}/{self._path(path)}"
        result = self.exec(["sh", "-c", _READ, "sh", WORKSPACE, target], timeout=_FILE_TIMEOUT_SEC)
        if result.ok:
            return result.stdout
        if result.returncode == 3:
            raise PermissionError(f"{path}: is a symlink or resolves outside the workspace")
        if result.returncode == 4:
            raise FileNotFoundError(f"{path}: no such file in the sandbox")
        if result.returncode == 5:
            raise IsADirectoryError(f"{path}: is a directory")
        raise InfraError("sandbox", f"could not read {path} in {self.name}: {result.text().strip()}")

    @override
    @contextlib.contextmanager
    def archive_workspace(self, *, stop_processes: bool = False) -> Iterator[IO[bytes]]:
        if self._server is not None:  # a few ms through the exec server, where docker kill + cp cost ~0.15 s
            with archive_by_exec(self, WORKSPACE, stop_processes=stop_processes) as archive:
                if archive is not None:
                    yield archive
                    return
        if stop_processes:  # --init: killing the container kills every process in it; the volume stays
            self._server = None
            self.engine.run("kill", self.name, check=False, timeout=60)
        copy = self.engine.argv("cp", f"{self.name}:{WORKSPACE}", "-")
        with archive_from_command(copy, self.name, cli_env()) as archive:
            yield archive

    @override
    def stop(self) -> None:
        _live.discard(self)
        self._server = None
        if self._engine is not None:
            self._engine.run("rm", "-f", "-v", self.name, check=False, timeout=60)
        if self._server_home is not None:
            shutil.rmtree(self._server_home, ignore_errors=True)
            self._server_home = None


def _csv(fields: Sequence[str]) -> str:
    """One ``--mount`` value: docker parses it as a CSV record, so quote commas in paths."""
    line = io.StringIO()
    csv.writer(line).writerow(fields)
    return line.getvalue().strip()


_live: set[DockerSandbox] = set()
"""Containers of this process not yet stopped: removed at exit (Ctrl-C); SIGKILL is left to :func:`reap`."""


@atexit.register
def _stop_live() -> None:
    for sandbox in list(_live):
        sandbox.stop()
