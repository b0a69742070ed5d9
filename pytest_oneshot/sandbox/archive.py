"""Workspace archives: streamed from a host command (:func:`archive_from_command`), or made by
commands inside the sandbox (:func:`archive_by_exec`) for backends whose files the host cannot
read directly (containers, remote sandboxes), and that have ``sh``, ``tar`` and ``/proc``.

With ``stop_processes`` every process in the sandbox except init and the chain that runs the
archiving command (the backend's exec server) is stopped and killed first, so no process of the
agent outlives its phase or changes the files while they are read.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from pytest_oneshot.errors import InfraError
from pytest_oneshot.sandbox import Sandbox

ARCHIVE_TIMEOUT_SEC = 300.0

# POSIX sh and /proc only: spare init, this shell and its ancestors; SIGSTOP everything else as it
# is found (so nothing forks away), until no new process appears; then SIGKILL them all.
_STOP_ALL = r"""
spare=" 1 $$ $3 " p=$$
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
# `sh -c _ARCHIVE sh ROOT stop|keep [SPARE_PIDS]`: the repo at ROOT as a tar on stdout (its .git left out),
# nothing else; SPARE_PIDS (space-separated) survive the stop too.
# (_STOP_ALL reuses the positional parameters.)
_ARCHIVE = (
    'exec 2>/dev/null; root=$1; [ "$2" = stop ] && { '
    + _STOP_ALL
    + '}; cd "$root" && exec tar --exclude=./.git --sparse -cf - .'
)


@contextlib.contextmanager
def archive_by_exec(
    sandbox: Sandbox, root: str, *, stop_processes: bool, spare: Sequence[int] = ()
) -> Iterator[IO[bytes] | None]:
    """Yield the archive of ``root`` (spooled through a host temp file), or None if it failed.

    ``spare``: processes that outlive ``stop_processes`` besides init and the archiving chain (a
    sandbox's main process, when it is not init and its end would end the sandbox)."""
    with tempfile.NamedTemporaryFile(prefix="oneshot-archive-", suffix=".tar") as spool:
        command = ["sh", "-c", _ARCHIVE, "sh", root, "stop" if stop_processes else "keep", " ".join(map(str, spare))]
        result = sandbox.exec(command, timeout=ARCHIVE_TIMEOUT_SEC, output=Path(spool.name))
        if not result.ok:
            yield None
            return
        with open(spool.name, "rb") as archive:
            yield archive


@contextlib.contextmanager
def archive_from_command(
    argv: Sequence[str], what: str, env: Mapping[str, str] | None = None, *, check: bool = True
) -> Iterator[IO[bytes]]:
    """Yield the stdout of a host command writing a tar (``tar -c``, ``docker cp``); killed when done.

    Raises:
        InfraError: with ``check``, the command failed and said why (naming ``what`` it archived).
    """
    # A session of its own: a terminal's Ctrl-C stops the session, and must not look like an unreadable workspace.
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, start_new_session=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        yield proc.stdout
    finally:
        proc.stdout.close()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        error = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.stderr.close()
        if proc.wait() not in (0, -9) and error and check:
            raise InfraError("sandbox", f"could not read the workspace of {what}: {error[-300:]}")
