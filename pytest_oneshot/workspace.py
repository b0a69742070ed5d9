"""Git operations on a sandbox's workspace: baseline commit, the agent's diff, restoring tests.

All of them run *inside* the sandbox through :meth:`Sandbox.exec`, so they work the same
for every backend. Git is invoked with hooks, fsmonitor and external diff drivers turned
off: the agent controls ``.git/config`` and must not be able to run code in our steps
or shape the diff we record.
"""

from __future__ import annotations

import secrets
import shlex
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


# Every step is one ``bash`` script run from the repo's top directory (``workdir`` may be a
# subdir): a sandbox exec is cheap locally but costs ~60 ms in a container.
_PRELUDE = f'set -e; g() {{ {shlex.join(_SAFE_GIT)} "$@"; }}; cd "$(g rev-parse --show-toplevel)"; '


@dataclass(frozen=True)
class Change:
    """The agent's change: the binary-safe diff and the repo-relative paths it touches."""

    diff: bytes
    paths: list[str]


@dataclass(frozen=True)
class Workspace:
    """The repo inside a sandbox, with the baseline commit the agent's change is measured from."""

    sandbox: Sandbox
    baseline: str

    @staticmethod
    def _run(sandbox: Sandbox, what: str, body: str, *args: str) -> bytes:
        result = sandbox.exec(["bash", "-c", _PRELUDE + body, "bash", *args], timeout=GIT_TIMEOUT_SEC)
        if not result.ok:
            raise InfraError("workspace", f"{what} failed: {result.text().strip()[-300:]}")
        return result.stdout

    @classmethod
    def commit_baseline(cls, sandbox: Sandbox) -> Workspace:
        """Commit whatever setup produced so the agent's diff is exactly its own change."""
        body = 'g add -A; g commit -q --allow-empty --no-verify -m "oneshot baseline"; g rev-parse HEAD'
        return cls(sandbox, cls._run(sandbox, "baseline commit", body).decode().strip())

    def collect_change(self) -> Change:
        """Stage everything (new files included) and return the diff against the baseline."""
        separator = f"\n--oneshot-{secrets.token_hex(8)}--\n"
        body = (
            'g add -A; g diff --cached --name-only --no-renames -z "$1"; printf %s "$2"; '
            'g diff --cached --binary --no-ext-diff --no-textconv --no-color "$1"'
        )
        out = self._run(self.sandbox, "collecting the diff", body, self.baseline, separator)
        names, _, diff = out.partition(separator.encode())
        return Change(diff, [path for path in names.decode("utf-8", "replace").split("\0") if path])

    def restore_test_runner_config(self, changed: Iterable[str]) -> list[str]:
        """Undo agent edits to conftest.py / pytest.ini (deleting ones it added); return what was undone."""
        undone = [path for path in changed if path.rsplit("/", 1)[-1] in TEST_RUNNER_CONFIG]
        if undone:
            body = (
                'base=$1; shift; for p in "$@"; do '
                'if g cat-file -e "$base:$p" 2>/dev/null; then g checkout "$base" -- "$p"; '
                'else g rm -q -r -f -- "$p"; fi; done'
            )
            self._run(self.sandbox, "restoring test config", body, self.baseline, *undone)
        return undone

    def write_hidden_tests(self, files: dict[str, bytes]) -> None:
        """Write the task's tests over whatever the agent left at those paths."""
        for path, data in files.items():
            self.sandbox.write_file(path, data)
