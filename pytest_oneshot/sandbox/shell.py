"""Shell scripts that do the Sandbox contract's file and process work with commands alone: POSIX sh and
/proc, so they run in any image, for backends whose files and processes the host cannot reach
directly (a container through the engine's exec, a remote Modal Sandbox). Each says how it is called."""

from __future__ import annotations

from pathlib import PurePosixPath

from pytest_oneshot.errors import InfraError
from pytest_oneshot.sandbox import Sandbox

# `sh -c WRITE_FILE sh WORKSPACE RELPATH` with the data on stdin: walk down from the workspace,
# replacing any symlink or file on the way with a real directory, so the write stays inside.
WRITE_FILE = r"""
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
# `sh -c READ_FILE sh WORKSPACE ABSPATH`: exit 3 = symlink or outside the workspace, 4 = missing, 5 = directory.
READ_FILE = r"""
[ -L "$2" ] && exit 3
[ -e "$2" ] || exit 4
case "$(readlink -f -- "$2")" in "$1"/*) ;; *) exit 3 ;; esac
[ -d "$2" ] && exit 5
exec cat -- "$2"
"""
# `sh -c LAUNCH sh RECORD_PID PIDFILE CMD...`: once the host sends a newline (stdin's first line), CMD
# writes its pid and /proc stat line (start time) to PIDFILE, so a timeout can find its whole tree, and runs as the
# leader of a new session when the image has setsid (as a child, which is never a group leader, so
# setsid need not fork). The rest of the exec's stdin is CMD's.
RECORD_PID = 'read -r s </proc/$$/stat; echo "$$ $s" >"$0"; exec "$@"'
LAUNCH = (
    "IFS= read -r _; r=$1 p=$2; shift 2; "
    'if command -v setsid >/dev/null 2>&1; then setsid sh -c "$r" "$p" "$@"; exit $?; fi; '
    'exec sh -c "$r" "$p" "$@"'
)
# `sh -c KILL_TREE sh PIDFILE`: stop ROOT's launcher and every process below ROOT, in its session, or orphaned
# (reparented to init) since ROOT started, so no parent dies before its children are
# found; then kill them all. POSIX sh and /proc only, as the image may be anyone's.
KILL_TREE = r"""
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

_FILE_TIMEOUT_SEC = 60.0


def sandbox_path(path: str, subdir: str) -> str:
    """``path`` (relative to the workdir) relative to the repo root.

    Raises:
        PermissionError: ``path`` is empty, absolute or has ``..``.
    """
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise PermissionError(f"{path}: sandbox paths must be relative to the workdir")
    return str(PurePosixPath(subdir, relative))


def write_by_exec(sandbox: Sandbox, root: str, path: str, subdir: str, data: bytes, *, name: str) -> None:
    """:meth:`Sandbox.write_file` through :data:`WRITE_FILE`, in a sandbox whose repo is at ``root``."""
    relative = sandbox_path(path, subdir)
    result = sandbox.exec(["sh", "-c", WRITE_FILE, "sh", root, relative], stdin=data, timeout=_FILE_TIMEOUT_SEC)
    if not result.ok:
        raise InfraError("sandbox", f"could not write {path} in {name}: {result.text().strip()}")


def read_by_exec(sandbox: Sandbox, root: str, path: str, subdir: str, *, name: str) -> bytes:
    """:meth:`Sandbox.read_file` through :data:`READ_FILE`, in a sandbox whose repo is at ``root``."""
    target = f"{root}/{sandbox_path(path, subdir)}"
    result = sandbox.exec(["sh", "-c", READ_FILE, "sh", root, target], timeout=_FILE_TIMEOUT_SEC)
    if result.ok:
        return result.stdout
    if result.returncode == 3:
        raise PermissionError(f"{path}: is a symlink or resolves outside the workspace")
    if result.returncode == 4:
        raise FileNotFoundError(f"{path}: no such file in the sandbox")
    if result.returncode == 5:
        raise IsADirectoryError(f"{path}: is a directory")
    raise InfraError("sandbox", f"could not read {path} in {name}: {result.text().strip()}")
