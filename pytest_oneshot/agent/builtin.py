"""Agents that need no model: ``oracle`` (the reference diff or solve.sh), ``nop`` and ``command``.

They calibrate a task set (oracle must pass, nop must fail) and let users plug in any
shell command as an agent, which is also how the tamper tests attack the harness.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping
from pathlib import Path

from pytest_oneshot.agent import AgentRequest, AgentResult
from pytest_oneshot.errors import OneshotError
from pytest_oneshot.logcap import capped_output
from pytest_oneshot.sandbox import ExecResult, Network, Sandbox


class _ModelFreeAgent:
    network: Network = "none"
    uses_model = False

    def mounts(self) -> Mapping[Path, str]:
        return {}


def _result(run: ExecResult, what: str) -> AgentResult:
    if run.timed_out:
        return AgentResult("timeout", f"{what} still running at the agent timeout", run.returncode)
    if run.returncode != 0:
        return AgentResult("agent_error", f"{what} exited {run.returncode}", run.returncode)
    return AgentResult("completed", exit_code=0)


# `bash -c _SOLVE`, the solution dir as a tar on stdin: unpacked at /solution (where Harbor puts it, so
# solve.sh may name its own files there) or, where / is read-only, a temp dir; then solve.sh runs in the workdir.
_SOLVE = r"""
set -e
dir=/solution
{ rm -rf "$dir" && mkdir -p "$dir"; } 2>/dev/null || dir=$(mktemp -d)
tar -x -f - -C "$dir"
cd "$1"
exec bash "$dir/solve.sh"
"""


class OracleAgent(_ModelFreeAgent):
    """Applies the task's reference ``diff.patch`` (or, without one, runs its ``solution/solve.sh``, as
    Harbor's oracle does): every valid task must pass with it."""

    name = "oracle"

    def __init__(self, options: Mapping[str, str]) -> None:
        del options

    def run(self, sandbox: Sandbox, request: AgentRequest) -> AgentResult:
        solution = request.task.paths.solution_dir
        if not request.task.paths.reference_diff.is_file() and (solution / "solve.sh").is_file():
            with capped_output(request.log_dir / "agent.log") as log:
                run = sandbox.exec(
                    ["bash", "-c", _SOLVE, "solve", sandbox.workdir],
                    stdin=_tar_dir(solution),
                    timeout=request.timeout_sec,
                    output=log,
                )
            return _result(run, "solution/solve.sh")
        try:
            patch = request.task.reference_patch()
        except FileNotFoundError as exc:
            return AgentResult("agent_error", str(exc))
        with capped_output(request.log_dir / "agent.log") as log:
            run = sandbox.exec(
                ["git", "apply", "--binary", "--whitespace=nowarn", "-"],
                stdin=patch,
                timeout=request.timeout_sec,
                output=log,
            )
        return _result(run, "git apply of the reference diff")


def _tar_dir(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(directory, arcname=".")
    return buffer.getvalue()


class NopAgent(_ModelFreeAgent):
    """Changes nothing: every valid task must fail with it."""

    name = "nop"

    def __init__(self, options: Mapping[str, str]) -> None:
        del options

    def run(self, sandbox: Sandbox, request: AgentRequest) -> AgentResult:
        del sandbox, request
        return AgentResult("completed", exit_code=0)


class CommandAgent(_ModelFreeAgent):
    """Runs a user-given shell command in the workspace (``--oneshot-agent-cmd``).

    The instructions are in ``$ONESHOT_INSTRUCTIONS``; the command runs under the same
    isolation and timeout as any agent.
    """

    name = "command"

    def __init__(self, options: Mapping[str, str]) -> None:
        self.command = options.get("cmd", "")
        if not self.command.strip():
            raise OneshotError("agent 'command' needs a command: --oneshot-agent-cmd='...'")

    def run(self, sandbox: Sandbox, request: AgentRequest) -> AgentResult:
        with capped_output(request.log_dir / "agent.log") as log:
            run = sandbox.exec(
                ["bash", "-c", self.command],
                env={"ONESHOT_INSTRUCTIONS": request.instructions, **request.env},
                timeout=request.timeout_sec,
                output=log,
            )
        return _result(run, "agent command")
