"""A workspace archive made by commands inside the sandbox: for backends whose files the host
cannot read directly (containers, remote sandboxes), and that have ``sh``, ``tar`` and ``/proc``.

With ``stop_processes`` every process in the sandbox except init and the chain that runs the
archiving command (the backend's exec server) is stopped and killed first, so no process of the
agent outlives its phase or changes the files while they are read.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pytest_oneshot.sandbox import Sandbox

ARCHIVE_TIMEOUT_SEC = 600.0

# POSIX sh and /proc only: spare init, this shell and its ancestors; SIGSTOP everything else as it
# is found (so nothing forks away), until no new process appears; then SIGKILL them all.
_STOP_ALL = r"""
spare=" 1 $$ " p=$$
while [ "$p" -gt 1 ]; do
  read -r line <"/proc/$p/stat" || break
  set -- ${line##*") "}; p=$2; spare="$spare$p "
done
found= changed=1
while [ -n "$changed" ]; do
  changed=
  for f in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null <"$f" || continue
    pid=${line%% *}
    case "$spare$found" in *" $pid "*) continue ;; esac
    found="$found$pid "; kill -STOP "$pid" 2>/dev/null; changed=1
  done
done
[ -z "$found" ] || kill -KILL $found 2>/dev/null
"""
# `sh -c _ARCHIVE sh ROOT stop|keep`: the repo at ROOT as a tar on stdout (its .git left out), nothing else.
# (_STOP_ALL reuses the positional parameters.)
_ARCHIVE = (
    'exec 2>/dev/null; root=$1; [ "$2" = stop ] && { '
    + _STOP_ALL
    + '}; cd "$root" && exec tar --exclude=./.git -cf - .'
)


@contextlib.contextmanager
def archive_by_exec(sandbox: Sandbox, root: str, *, stop_processes: bool) -> Iterator[IO[bytes] | None]:
    """Yield the archive of ``root`` (spooled through a host temp file), or None if it failed."""
    with tempfile.NamedTemporaryFile(prefix="oneshot-archive-", suffix=".tar") as spool:
        command = ["sh", "-c", _ARCHIVE, "sh", root, "stop" if stop_processes else "keep"]
        result = sandbox.exec(command, timeout=ARCHIVE_TIMEOUT_SEC, output=Path(spool.name))
        if not result.ok:
            yield None
            return
        with open(spool.name, "rb") as archive:
            yield archive
