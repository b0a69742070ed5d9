"""The docker backend's sandboxes: the task image's own files, mounted from its layers, no container.

A container costs the engine ~0.3 s of CPU to create, start and remove, as much as a trial's tests.
When the engine runs on this host and keeps the image as overlay2 layers we can read (we are root),
each command mounts those layers in a mount namespace of its own and runs under bubblewrap on them:
the same files, python and packages as a container of the image, the image's environment, the
task's CPU and memory limits as a cgroup (:mod:`cgroup`), docker's default capabilities less
``MKNOD``, the network of a container (none, or the host's for ``loopback``, as ``--network host``).
The workspace, HOME (/root), /tmp and /run are host dirs of this sandbox; as in a container they
outlive a command. The workspace is an overlay mounted on this host: the image's workspace, copied
once per image into the cache, under an upper dir of this sandbox's own (so a trial copies nothing,
and what a sandbox writes never reaches the copy the next one starts from).

The scoring sandbox mounts the image read-only: nothing can change the python, plugins or shell
under the tests. The agent's sandbox gets a writable system, as its container had (an overlay upper
dir of its own, thrown away with the sandbox: only the repo's files leave it), and its mounts (an
agent binary) read-only.

Elsewhere (a remote engine, another storage driver, cgroup v2, not root) the sandbox is a
container (:class:`DockerSandbox`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from oneshot_shared.paths import cache_dir as default_cache_dir
from pytest_oneshot.owner import Owner, remove_dead_dirs, remove_dir
from pytest_oneshot.sandbox import ExecResult, HostFiles, Sandbox, SandboxSpec, cgroup
from pytest_oneshot.sandbox.docker import SANDBOX_ENV, DockerSandbox
from pytest_oneshot.sandbox.docker_image import WORKSPACE, environment_image
from pytest_oneshot.sandbox.dockerd import BASE_IMAGE, Engine, ensure_engine
from pytest_oneshot.sandbox.host_workspace import HostWorkspace
from pytest_oneshot.sandbox.process import MARKER, kill_host_tree, run_process

_ROOT_PREFIX = "oneshot-tree-"
_BUILDING_PREFIX = "building-"
_COPY_TIMEOUT_SEC = 300.0
# Docker's default capabilities, less MKNOD: no device cgroup guards this sandbox's host-backed dirs.
_CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "NET_RAW", "SETGID", "SETUID", "SETFCAP", "SETPCAP",
    "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)  # fmt: skip
# `sh -c _MOUNT_AND_RUN sh MOUNT OVERLAY_DIR OPTIONS ROOTFS PROCS... -- ARGV...`: join the limits'
# cgroups, mount the image at ROOTFS with these overlay options (this mount namespace only), run ARGV.
_MOUNT_AND_RUN = r"""
set -e
mount=$1; cd "$2"; options=$3; rootfs=$4; shift 4
while [ "$1" != -- ]; do echo $$ >"$1"; shift; done
shift
"$mount" -t overlay oneshot-tree -o "$options" "$rootfs"
cd /
exec "$@"
"""
# What a container gets from the engine and an image may lack: mount points, a hosts file for localhost.
_INIT_LAYER = {
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "etc/hostname": "oneshot\n",
    "etc/resolv.conf": "",
}
_INIT_DIRS = ("workspace", "root", "tmp", "run", "proc", "dev", "sys")


@dataclass(frozen=True)
class ImageTree:
    """An image's files as this host keeps them: overlay2 layers, top first, named by their short
    links inside the engine's overlay2 dir (so a long stack still fits in one mount option)."""

    image_id: str
    overlay_dir: Path
    layers: tuple[str, ...]
    env: dict[str, str]


def image_tree(engine: Engine, image: str) -> ImageTree | None:
    """The image's layers on this host, or None when it cannot be mounted from here."""
    info = engine.image(image)
    if info is None:
        return None
    driver, config = info.get("GraphDriver") or {}, info.get("Config") or {}
    if driver.get("Name") != "overlay2":
        return None
    data = driver.get("Data") or {}
    diffs = [Path(diff) for diff in (data.get("UpperDir"), *(data.get("LowerDir") or "").split(":")) if diff]
    links = []
    for diff in diffs:
        try:
            links.append("l/" + (diff.parent / "link").read_text().strip())
        except OSError:  # another host's engine, or not ours to read
            return None
    overlay_dir = diffs[0].parent.parent
    if not all((overlay_dir / link).is_dir() for link in links):
        return None
    env = dict(item.partition("=")[::2] for item in config.get("Env") or [])
    return ImageTree(str(info["Id"]), overlay_dir, tuple(links), env)


def _init_layer(cache_dir: Path) -> Path:
    """The read-only top layer every tree gets (made once per cache dir)."""
    layer = cache_dir / "docker" / "tree-init-1"
    if not layer.is_dir():
        building = Path(tempfile.mkdtemp(prefix="tree-init-", dir=layer.parent if layer.parent.is_dir() else None))
        for directory in _INIT_DIRS:
            (building / directory).mkdir()
        for name, text in _INIT_LAYER.items():
            (building / name).parent.mkdir(parents=True, exist_ok=True)
            (building / name).write_text(text)
        layer.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # another worker made it first
            os.rename(building, layer)
        shutil.rmtree(building, ignore_errors=True)
    return layer


def _workspaces_dir(cache_dir: Path) -> Path:
    """Where the images' workspaces are copied, one dir per image id."""
    return cache_dir / "docker" / "tree-workspaces"


_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2


# The upper dir must hold every change as whole files (see HostFiles): no redirects (a lower
# dir's rename fails with EXDEV, and `mv` copies it) and no metadata-only copy-ups, whatever the
# kernel's defaults are.
_WORKSPACE_OVERLAY_OPTIONS = "redirect_dir=off,metacopy=off,index=off"


def _mount_workspace(root: Path, image_workspace: Path) -> bool:
    """Mount the tree's workspace on this host: ``image_workspace`` under the tree's own upper dir."""
    options = (
        f"lowerdir={image_workspace},upperdir={root / 'workspace-upper'},workdir={root / 'workspace-work'},"
        + _WORKSPACE_OVERLAY_OPTIONS
    )
    mounted = bool(_libc.mount(b"oneshot-workspace", bytes(root / "workspace"), b"overlay", 0, options.encode()) == 0)
    if not mounted:
        code = ctypes.get_errno()
        warnings.warn(
            f"docker sandbox: cannot mount the workspace overlay ({errno.errorcode.get(code, code)})", stacklevel=2
        )
    return mounted


def _stop_tree(root: Path) -> None:
    """Stop the tree's processes and unmount its workspace, so it can be removed."""
    kill_host_tree(None, root.name)
    _libc.umount2(bytes(root / "workspace"), _MNT_DETACH)  # fails harmlessly when it is not mounted


def _remove_unused_workspaces(cache_dir: Path) -> list[str]:
    """The cached workspaces of images the engine no longer has."""
    copies = [path for path in _workspaces_dir(cache_dir).glob("*") if not path.name.startswith(_BUILDING_PREFIX)]
    if not copies:
        return []
    engine = ensure_engine()
    removed = []
    for copy in copies:
        if engine.image(f"sha256:{copy.name}") is None:
            shutil.rmtree(copy, ignore_errors=True)
            removed.append(str(copy))
    return removed


class ImageTreeSandbox:
    """A sandbox on the task image's files (see the module docstring); a container when it cannot be."""

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self.writable_system = not spec.scoring
        """The agent's sandbox: its system changes go to an upper dir of its own."""
        self.base_image = spec.options.get("docker_image") or BASE_IMAGE
        self.cache_dir = Path(spec.options["cache_dir"]) if spec.options.get("cache_dir") else None
        self.workdir = str(PurePosixPath(WORKSPACE, spec.task.spec.repo.subdir))
        self.container: DockerSandbox | None = None
        """Set when this sandbox is a container after all."""
        self._root: Path | None = None
        self._limits: cgroup.Limits | None = None
        self._prefix: list[str] = []
        """Mounts the image and joins the limits, then runs what follows."""
        self._bwrap: list[str] = []
        self._env: dict[str, str] = {}
        self._files: HostWorkspace | None = None
        self._start: Path | None = None
        """The image's workspace copy this tree's workspace is mounted over."""

    def start(self) -> None:
        spec, engine = self.spec, ensure_engine()
        image = environment_image(
            engine, spec.task, spec.repo_snapshot, base_image=self.base_image, cache_dir=self.cache_dir
        )
        tools = [shutil.which(name) for name in ("unshare", "mount", "bwrap")]
        mountable = self.writable_system or not spec.mounts  # a read-only root has no mount points to make
        usable = os.geteuid() == 0 and all(tools) and mountable
        tree = image_tree(engine, image) if usable else None
        self._limits = cgroup.Limits.create(spec.cpus, spec.memory_mb) if tree else None
        if tree is None or self._limits is None:
            self._as_container()
            return
        unshare, mount, bwrap = (str(tool) for tool in tools)
        self._root = root = Path(tempfile.mkdtemp(prefix=_ROOT_PREFIX))
        Owner.claim(root)  # a later session removes it if this process is SIGKILLed
        overlay = ("upper", "work") if self.writable_system else ()  # the system's changes, and overlayfs's scratch
        for name in ("rootfs", "workspace", "workspace-upper", "workspace-work", "home", "tmp", "run", *overlay):
            (root / name).mkdir()
        cache_dir = self.cache_dir or default_cache_dir()
        lower = ":".join([str(_init_layer(cache_dir)), *tree.layers])
        options = f"ro,lowerdir={lower}"
        if self.writable_system:
            options = f"lowerdir={lower},upperdir={root / 'upper'},workdir={root / 'work'}"
        self._prefix = [
            unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", _MOUNT_AND_RUN, "sh",
            mount, str(tree.overlay_dir), options, str(root / "rootfs"), *map(str, self._limits.procs), "--",
        ]  # fmt: skip
        self._bwrap = self._bwrap_argv(bwrap)
        self._env = {**tree.env, **SANDBOX_ENV, "HOME": "/root", MARKER: root.name}
        image_workspace = self._image_workspace(tree, cache_dir)
        if image_workspace is None or not _mount_workspace(root, image_workspace):
            self._as_container()  # this host cannot mount it after all: a container can still serve
            return
        self._files = HostWorkspace(root / "workspace", root / "workspace" / spec.task.spec.repo.subdir)
        self._start = image_workspace

    def start_key(self) -> str | None:
        """The image's workspace copy (named by the image's id): every scoring tree of the image starts as it."""
        if self._start is None or self.container is not None or self.writable_system:
            return None  # the agent's tree is never read as a fresh one: no key that an agent's files could fill
        return f"docker-tree:{self._start}"

    def _image_workspace(self, tree: ImageTree, cache_dir: Path) -> Path | None:
        """The image's workspace as plain files in the cache, copied once per image; None when it cannot be."""
        copy = _workspaces_dir(cache_dir) / tree.image_id.removeprefix("sha256:")
        if copy.is_dir():
            return copy
        copy.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=_BUILDING_PREFIX, dir=copy.parent))
        Owner.claim(building)  # litter of a SIGKILLed copy is removed by a later session
        try:
            copied = run_process(
                [*self._prefix, "cp", "-a", f"{self._root}/rootfs{WORKSPACE}/.", str(building / "workspace")],
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", MARKER: self._env[MARKER]},
                timeout=_COPY_TIMEOUT_SEC,
            )
            if not copied.ok:
                return None
            with contextlib.suppress(OSError):  # another worker made it first
                os.rename(building / "workspace", copy)
        finally:
            shutil.rmtree(building, ignore_errors=True)
        return copy

    def _as_container(self) -> None:
        self._release()
        self.container = DockerSandbox(self.spec, base_image=self.base_image, cache_dir=self.cache_dir)
        self.container.start()

    def _bwrap_argv(self, bwrap: str) -> list[str]:
        assert self._root is not None and self._limits is not None
        root = self._root
        argv = [bwrap, "--die-with-parent", "--new-session", "--unshare-all", "--cap-drop", "ALL"]
        for capability in _CAPABILITIES:
            argv += ["--cap-add", f"CAP_{capability}"]
        if self.spec.network == "loopback":
            argv.append("--share-net")
        argv += ["--bind" if self.writable_system else "--ro-bind", str(root / "rootfs"), "/"]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        for name, target in (("workspace", WORKSPACE), ("home", "/root"), ("tmp", "/tmp"), ("run", "/run")):
            argv += ["--bind", str(root / name), target]
        for host, target in self.spec.mounts.items():
            argv += ["--ro-bind", str(Path(host).resolve()), target]
        argv += ["--tmpfs", "/sys", "--ro-bind", str(self._limits.cpu), "/sys/fs/cgroup/cpu"]
        return [*argv, "--ro-bind", str(self._limits.memory), "/sys/fs/cgroup/memory"]

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
        if self.container is not None:
            return self.container.exec(cmd, timeout=timeout, env=env, cwd=cwd, stdin=stdin, output=output)
        argv = [*self._prefix, *self._bwrap, "--chdir", cwd or self.workdir, "--", *cmd]
        return run_process(argv, env={**self._env, **(env or {})}, stdin=stdin, timeout=timeout, output=output)

    def write_file(self, path: str, data: bytes) -> None:
        if self.container is not None:
            return self.container.write_file(path, data)
        assert self._files is not None, "start() first"
        return self._files.write_file(path, data)

    def read_file(self, path: str) -> bytes:
        if self.container is not None:
            return self.container.read_file(path)
        assert self._files is not None, "start() first"
        return self._files.read_file(path)

    def archive_workspace(self, *, stop_processes: bool = False) -> contextlib.AbstractContextManager[IO[bytes]]:
        if self.container is not None:
            return self.container.archive_workspace(stop_processes=stop_processes)
        assert self._files is not None, "start() first"
        if stop_processes:
            kill_host_tree(None, self._env[MARKER])
        return self._files.archive()

    def host_files(self, *, stop_processes: bool = False) -> HostFiles | None:
        if self.container is not None or self._root is None or self._files is None:
            return None
        if stop_processes:
            kill_host_tree(None, self._env[MARKER])
        return HostFiles(root=self._root / "workspace", upper=self._root / "workspace-upper")

    def stop(self) -> None:
        if self.container is not None:
            self.container.stop()
        self._release()

    def _release(self) -> None:
        if self._root is not None:
            _stop_tree(self._root)
            remove_dir(self._root)
            self._root = None
        if self._limits is not None:
            self._limits.remove()
            self._limits = None


class DockerFactory:
    """The ``docker`` backend: sandboxes on the image's files, containers where they cannot be."""

    def __call__(self, spec: SandboxSpec) -> Sandbox:
        return ImageTreeSandbox(spec)

    @staticmethod
    def cleanup_stale(options: Mapping[str, str]) -> list[str]:
        """Trees (their processes first: a SIGKILLed run's agent may still run), cgroups and partial
        workspace copies of runs that died, then what needs the engine: their containers, and cached
        image workspaces whose image is gone (an engine that cannot be reached leaves the rest done)."""
        cache_dir = Path(options["cache_dir"]) if options.get("cache_dir") else default_cache_dir()
        on_this_host = [
            *remove_dead_dirs(Path(tempfile.gettempdir()), _ROOT_PREFIX, _stop_tree),
            *remove_dead_dirs(_workspaces_dir(cache_dir), _BUILDING_PREFIX),
            *cgroup.remove_stale(),
        ]
        return [*on_this_host, *DockerSandbox.cleanup_stale(options), *_remove_unused_workspaces(cache_dir)]


docker_sandbox = DockerFactory()
