"""Git operations on a sandbox's workspace: baseline commit, the agent's diff, restoring tests.

All of them run *inside* the sandbox through :meth:`Sandbox.exec`, so they work the same
for every backend. Git is invoked with hooks, fsmonitor and external diff drivers turned
off: the agent controls ``.git/config`` and must not be able to run code in our steps
or shape the diff we record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pytest_oneshot.errors import InfraError
from pytest_oneshot.sandbox import Sandbox

GIT_TIMEOUT_SEC = 120.0
_SAFE_GIT = [
    "git",
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "diff.external=",
    "-c", "user.name=oneshot",
    "-c", "user.email=oneshot@localhost",
    "-c", "commit.gpgsign=false",
    "-c", "safe.directory=*",
]  # fmt: skip

# Files that configure the test runner: an agent edit to these could rewrite the verdict,
# so they are restored to the baseline before the hidden tests run.
TEST_RUNNER_CONFIG = ("conftest.py", "pytest.ini")


@dataclass(frozen=True)
class Workspace:
    """The repo inside a sandbox; ``root`` is its top directory (``workdir`` may be a subdir)."""

    sandbox: Sandbox
    root: str

    @classmethod
    def open(cls, sandbox: Sandbox) -> Workspace:
        result = sandbox.exec(["git", "rev-parse", "--show-toplevel"], timeout=GIT_TIMEOUT_SEC)
        if not result.ok:
            raise InfraError("workspace", f"workdir is not a git repo: {result.text().strip()}")
        return cls(sandbox, result.stdout.decode().strip())

    def git(self, *args: str, check: bool = True) -> bytes:
        result = self.sandbox.exec([*_SAFE_GIT, *args], timeout=GIT_TIMEOUT_SEC, cwd=self.root)
        if check and not result.ok:
            raise InfraError("workspace", f"git {args[0]} failed: {result.text().strip()[-300:]}")
        return result.stdout

    def make_baseline(self) -> str:
        """Commit whatever setup produced so the agent's diff is exactly its own change; return the sha."""
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "--no-verify", "-m", "oneshot baseline")
        return self.git("rev-parse", "HEAD").decode().strip()

    def collect_diff(self, baseline: str) -> bytes:
        """The agent's change since ``baseline``: staged, binary-safe, new files included."""
        self.git("add", "-A")
        return self.git("diff", "--cached", "--binary", "--no-ext-diff", "--no-textconv", "--no-color", baseline)

    def changed_paths(self, baseline: str) -> list[str]:
        """Repo-relative paths the agent touched (after :meth:`collect_diff` staged them)."""
        out = self.git("diff", "--cached", "--name-only", "--no-renames", "-z", baseline)
        return [path for path in out.decode("utf-8", "replace").split("\0") if path]

    def restore_test_runner_config(self, baseline: str, changed: Iterable[str]) -> list[str]:
        """Undo agent edits to conftest.py / pytest.ini (deleting ones it added); return what was undone."""
        undone = [path for path in changed if path.rsplit("/", 1)[-1] in TEST_RUNNER_CONFIG]
        for path in undone:
            if self._exists_at(baseline, path):
                self.git("checkout", baseline, "--", path)
            else:
                self.git("rm", "-q", "-r", "-f", "--", path)
        return undone

    def _exists_at(self, commit: str, path: str) -> bool:
        return self.sandbox.exec([*_SAFE_GIT, "cat-file", "-e", f"{commit}:{path}"], cwd=self.root).ok

    def write_hidden_tests(self, files: dict[str, bytes]) -> None:
        """Write the task's tests over whatever the agent left at those paths."""
        for path, data in files.items():
            self.sandbox.write_file(path, data)
