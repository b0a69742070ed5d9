"""Codex configuration written for capture, and the sensitivity decision (against a loopback GitHub API)."""

from __future__ import annotations

import json
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from mcp_server import codex_config, sensitivity
from pytest_oneshot.cli import main

USER_CONFIG = (
    '# mine\nmodel = "gpt-5"\nmodel_provider = "corp"\n[model_providers.corp]\nname = "Corp"\n'
    'base_url = "https://llm.corp.example/v1"\nenv_key = "CORP_KEY"\n[mcp_servers.other]\ncommand = "x"\n'
)


def test_session_home_is_layered_over_the_users(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "config.toml").write_text(USER_CONFIG)
    (user / "auth.json").write_text("{}")
    table = codex_config.mcp_server_table({"ONESHOT_REPO": "/r"})
    provider = codex_config.traced_provider(tomllib.loads(USER_CONFIG), "http://127.0.0.1:5555", "capture-1")
    home = codex_config.layered_home(
        tmp_path / "session",
        user,
        {"mcp_servers": {"oneshot": table}, "model_provider": "oneshot-traced",
         "model_providers": {"oneshot-traced": provider}},
    )  # fmt: skip
    assert (user / "config.toml").read_text() == USER_CONFIG
    assert (home / "auth.json").resolve() == (user / "auth.json").resolve()
    merged = tomllib.loads((home / "config.toml").read_text())
    assert merged["mcp_servers"]["other"] == {"command": "x"}, "the user's own servers stay"
    assert merged["mcp_servers"]["oneshot"]["env"] == {"PYTHONUNBUFFERED": "1", "ONESHOT_REPO": "/r"}
    assert merged["mcp_servers"]["oneshot"]["required"] is True
    traced = merged["model_providers"]["oneshot-traced"]
    assert traced["base_url"] == "http://127.0.0.1:5555/v1" and traced["env_key"] == "CORP_KEY"
    assert traced["http_headers"] == {"x-oneshot-session": "capture-1"}
    assert codex_config.split_upstream(codex_config.upstream_of(tomllib.loads(USER_CONFIG))) == (
        "https://llm.corp.example",
        "/v1",
    )


def test_setup_codex_writes_the_server_table_and_keeps_the_old_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(USER_CONFIG)
    assert main(["setup", "codex", "--codex-home", str(tmp_path)]) == 0
    assert (tmp_path / "config.toml.bak").read_text() == USER_CONFIG
    written = tomllib.loads((tmp_path / "config.toml").read_text())
    assert written["model"] == "gpt-5" and written["mcp_servers"]["oneshot"]["args"] == ["-m", "mcp_server"]
    assert "ONESHOT_TASKS_DIR" in written["mcp_servers"]["oneshot"]["env"]


class _GitHub(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        private = {"/repos/me/secret": True, "/repos/me/open": False}.get(self.path)
        body = json.dumps({"private": private}).encode() if private is not None else b'{"message":"Not Found"}'
        self.send_response(200 if private is not None else 404)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    server = HTTPServer(("127.0.0.1", 0), _GitHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("ONESHOT_GITHUB_API", f"http://127.0.0.1:{server.server_port}")
    for name in ("ONESHOT_SENSITIVITY", "PRIVATE_GITHUB_PAT", "GH_PAT"):
        monkeypatch.delenv(name, raising=False)
    yield
    server.shutdown()


def test_sensitivity_follows_github_and_never_raises(github: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sensitivity.decide(["git@github.com:me/secret.git"]) == "sensitive"
    assert sensitivity.decide(["https://github.com/me/open"]) == "safe"
    assert sensitivity.decide(["https://github.com/me/gone"]) == "unknown"
    monkeypatch.setenv("GH_PAT", "token-value")
    assert sensitivity.decide(["https://github.com/me/gone"]) == "sensitive", "hidden from our token"
    assert sensitivity.decide(["/srv/git/local.git"]) == "unknown"
    monkeypatch.setenv("ONESHOT_GITHUB_API", "http://127.0.0.1:9")  # nothing listens: no answer
    assert sensitivity.decide(["https://github.com/me/open"]) == "unknown"
    assert sensitivity.decide(["https://github.com/me/open"], "safe") == "safe"
    with pytest.raises(ValueError, match="must be one of"):
        sensitivity.decide([], "secret")
