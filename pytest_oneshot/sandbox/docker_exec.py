"""The two ways a command reaches a container: its exec server (:mod:`execd`, a few ms each) and
``docker exec`` (~65 ms), the fallback for images without python3 and for a server the agent killed.
Both keep the :meth:`Sandbox.exec` contract; the sandbox chooses."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from pytest_oneshot.sandbox import ExecResult, execd
from pytest_oneshot.sandbox.dockerd import Engine, cli_env
from pytest_oneshot.sandbox.process import KILL_GRACE_SEC, Sink, run_process

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


def server_exec(
    server: execd.Client,
    cmd: Sequence[str],
    *,
    timeout: float | None,
    env: Mapping[str, str],
    cwd: str,
    stdin: bytes | None,
    output: Path | None,
) -> ExecResult:
    """Run ``cmd`` through the container's exec server, which kills the tree at the timeout itself.

    Raises:
        execd.ServerLost: nothing was sent (the command can still run through ``docker exec``).
        ConnectionError: the server was lost mid-command.
    """
    started = time.monotonic()
    sink = Sink(output)
    wait = None if timeout is None else timeout + 2 * KILL_GRACE_SEC
    try:
        end = server.run(
            cmd, env=env, cwd=cwd, timeout=timeout, stdin=stdin, merge=sink.file is not None,
            on_output=sink.write, wait=wait,
        )  # fmt: skip
    finally:
        sink.close()
    return sink.result(end.returncode, end.timed_out, started)


def engine_exec(
    engine: Engine,
    container: str,
    cmd: Sequence[str],
    *,
    timeout: float | None,
    env: Mapping[str, str],
    cwd: str,
    stdin: bytes | None,
    output: Path | None,
) -> ExecResult:
    """Run ``cmd`` through ``docker exec``: its pid is recorded so a timeout finds and kills its whole tree."""
    pidfile = f"/tmp/.oneshot-exec-{uuid.uuid4().hex}.pid"
    argv = engine.argv("exec", "-w", cwd, *(["-i"] if stdin is not None else []))
    for name in env:
        argv += ["-e", name]  # the value travels in the client's environment, never in an argv
    argv += [container, "sh", "-c", _LAUNCH, "sh", _RECORD, pidfile, *cmd]

    def kill_tree() -> None:
        engine.run("exec", container, "sh", "-c", _KILL_TREE, "sh", pidfile, check=False, timeout=30)

    return run_process(argv, env=cli_env(env), stdin=stdin, timeout=timeout, output=output, kill_tree=kill_tree)
