"""Engine discovery and the apt mirror lookup: the parts of dockerd that need no engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_oneshot.errors import SandboxUnavailableError
from pytest_oneshot.sandbox.dockerd import apt_mirror, ensure_engine


def test_apt_mirror_reads_deb822_and_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert apt_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://old.example/debian bookworm main\n")
    assert apt_mirror(tmp_path) == "http://old.example/debian"
    (tmp_path / "sources.list").write_text("deb http://old.example/debian bullseye main\n")
    with pytest.raises(SandboxUnavailableError, match="no `bookworm` apt source"):
        apt_mirror(tmp_path)


def test_docker_host_that_does_not_answer_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(SandboxUnavailableError, match=r"DOCKER_HOST=unix://.*/nothing.sock does not answer"):
        ensure_engine.__wrapped__()
