"""The judges the judge contract suite runs on, each with its declared gaps, and the scripted upstream.

- ``openai``: the built-in Responses judge, from the judge registry;
- ``third-party``: ``tests/fixtures/third_party_judge`` (a urllib judge), pip-installed in this session
  and loaded from the ``pytest_oneshot.judges`` entry point, as a plugin would be.

Each talks to a scripted Responses server on 127.0.0.1 whose answers have the real API's shape.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from judge_answers import DIFF, RUBRIC, answer, failed, http_error, judge_request, verdict_json

from pytest_oneshot.judge import Judge, JudgeFactory, default_judge_registry
from pytest_oneshot.model.cassette import Turn
from pytest_oneshot.model.scripted import ScriptedResponsesServer

__all__ = ["DIFF", "RUBRIC", "answer", "failed", "http_error", "judge_request", "verdict_json"]

THIRD_PARTY = Path(__file__).resolve().parents[1] / "fixtures" / "third_party_judge"
KNOWN_GAPS: dict[str, dict[str, str]] = {
    "openai": {},
    "third-party": {
        "retries": "it asks once: a 429 or 5xx is its error at once (allowed: an error, never a score)",
        "cache": "it keeps no cache: every call is asked again",
    },
}


@pytest.fixture(scope="session")
def third_party_judge_factory(tmp_path_factory: pytest.TempPathFactory) -> JudgeFactory:
    """Install the third-party judge (offline, from a copy) and load it the way a session does."""
    source = shutil.copytree(THIRD_PARTY, tmp_path_factory.mktemp("third-party-judge-src") / "pkg")
    target = tmp_path_factory.mktemp("third-party-judge-site")
    argv = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", "--no-deps"]
    subprocess.run([*argv, "--target", str(target), str(source)], check=True, capture_output=True)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    registry = default_judge_registry()
    assert "urllib" in registry.names(), registry.names()
    return registry.get("urllib")


@pytest.fixture(scope="session")
def upstream() -> Iterator[ScriptedResponsesServer]:
    with ScriptedResponsesServer() as server:
        yield server


@dataclass
class JudgeBackend:
    name: str
    factory: JudgeFactory
    server: ScriptedResponsesServer
    key: str
    cache_dir: Path

    def gap(self, promise: str) -> None:
        reason = KNOWN_GAPS[self.name].get(promise)
        if reason:
            pytest.skip(f"{self.name}: known gap: {reason}")

    def judge(self, turns: Sequence[Turn], **options: str) -> Judge:
        """A judge whose upstream answers ``turns`` in order (the last one again after that)."""
        url = self.server.add_script(self.key, list(turns))
        defaults = {"base_url": url, "timeout": "30", "cache_dir": str(self.cache_dir), "backoff_sec": "0.01"}
        return self.factory(defaults | options)

    def requests(self) -> list[Any]:
        return self.server.requests(self.key)


@pytest.fixture(params=["openai", "third-party"])
def judge_backend(request: pytest.FixtureRequest, upstream: ScriptedResponsesServer, tmp_path: Path) -> JudgeBackend:
    name = str(request.param)
    if name == "openai":
        factory = default_judge_registry().get("openai")
    else:
        factory = request.getfixturevalue("third_party_judge_factory")
    key = f"{name}-{request.node.name}".replace("[", "-").replace("]", "").replace("/", "-")
    return JudgeBackend(name, factory, upstream, key, tmp_path / "cache")
