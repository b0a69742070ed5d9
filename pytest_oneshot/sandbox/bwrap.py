"""bubblewrap for the local sandbox and its environment builds: the argv, the base environment.

Shared by :mod:`local` (trial commands) and :mod:`local_env` (venv builds), so neither imports
the other's module.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path

SANDBOX_WORKSPACE = "/workspace"
SANDBOX_HOME = "/oneshot/home"
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


class IsolationWarning(UserWarning):
    """bubblewrap is missing: local trials run as plain subprocesses."""


@cache
def bubblewrap() -> str | None:
    """Path of a working ``bwrap``, or None (warned once per process)."""
    path = shutil.which("bwrap")
    if path and subprocess.run([path, "--ro-bind", "/", "/", "true"], capture_output=True).returncode == 0:
        return path
    warnings.warn(
        "bubblewrap (bwrap) is not installed or cannot create namespaces: the local sandbox runs agents "
        "as plain subprocesses without isolation; install it with `apt-get install bubblewrap`",
        IsolationWarning,
        stacklevel=2,
    )
    return None


def base_env(home: str, tmp: str) -> dict[str, str]:
    """The whole environment a sandboxed command starts from: nothing inherited from the host."""
    python_bin = str(Path(sys.executable).parent)
    return {
        "PATH": f"{python_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": home,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "ONESHOT_IN_SANDBOX": "1",
    }


# Our distribution's packages: pytest inside the sandbox autoloads the plugin, which must
# import even when the project is installed editable from a tree the sandbox doesn't mount.
_OUR_PACKAGES = ("pytest_oneshot", "oneshot_shared", "proxy", "mcp_server")


def _python_dirs() -> Iterator[Path]:
    """Host dirs the sandbox needs to run this Python and the (possibly editable) plugin."""
    for prefix in {sys.prefix, sys.base_prefix, os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}:
        yield Path(prefix)
    for package in _OUR_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            yield Path(spec.origin).resolve().parent


def bwrap_argv(
    bwrap: str,
    cmd: Sequence[str],
    cwd: str,
    *,
    share_net: bool,
    binds: Sequence[tuple[Path, str]],
    ro_binds: Sequence[tuple[Path, str]] = (),
) -> list[str]:
    """``cmd`` under bubblewrap: read-only system and Python, private /tmp, only the given host paths bound."""
    argv = [bwrap, "--die-with-parent", "--new-session", "--unshare-all"]
    if os.geteuid() == 0:  # bubblewrap keeps root's capabilities: a sandboxed root could mount the host's disk
        argv += ["--cap-drop", "ALL"]
    if share_net:
        argv.append("--share-net")
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # before binds: a venv may live in /tmp
    for system_dir in _SYSTEM_DIRS:
        if os.path.islink(system_dir):
            argv += ["--symlink", os.readlink(system_dir), system_dir]
        elif os.path.isdir(system_dir):
            argv += ["--ro-bind", system_dir, system_dir]
    for path in _python_dirs():
        if path.is_dir() and not str(path).startswith(_SYSTEM_DIRS):
            argv += ["--ro-bind", str(path), str(path)]
    for host_path, sandbox_path in binds:
        argv += ["--bind", str(host_path), sandbox_path]
    for host_path, sandbox_path in ro_binds:
        argv += ["--ro-bind", str(host_path), sandbox_path]
    return [*argv, "--chdir", cwd, "--", *cmd]
