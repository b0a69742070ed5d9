"""The Codex agent: the real Codex CLI run headless inside the sandbox against a Responses API.

The pinned static binary is mounted read-only into the sandbox and run as
``codex exec --json`` with a per-trial ``CODEX_HOME`` (a temp dir under the sandbox's HOME)
whose generated ``config.toml`` points at a custom provider and turns off everything that
would phone home. Codex talks only to a loopback route of the model gateway
(:mod:`pytest_oneshot.model.gateway`; the trial's ``request.endpoint``, or a private gateway when the
agent runs on its own), which counts tokens, enforces ``token_limit`` and adds the API key on
the way out: the key never enters the sandbox, its environment or any file.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from oneshot_shared.wire import USAGE_KEYS
from pytest_oneshot.agent import AgentRequest, AgentResult, ModelEndpoint, TokenUsage
from pytest_oneshot.errors import InfraError, OneshotError
from pytest_oneshot.logcap import capped_output
from pytest_oneshot.model.catalog import catalog_for
from pytest_oneshot.model.gateway import DEFAULT_BASE_URL, ModelGateway
from pytest_oneshot.sandbox import ExecResult, Network, Sandbox

__all__ = ["CODEX_VERSION", "CodexAgent", "find_codex"]

CODEX_VERSION: Final = "0.169.0"
SANDBOX_CODEX_BIN: Final = "/opt/oneshot/bin/codex"
REASONING_EFFORTS: Final = ("none", "minimal", "low", "medium", "high", "xhigh")
_NPM_ROOTS: Final = ("/usr/local/lib/node_modules", "/usr/lib/node_modules")
_PLATFORMS: Final = {"x86_64": ("x64", "x86_64"), "aarch64": ("arm64", "aarch64"), "arm64": ("arm64", "aarch64")}
_INSTALL_HINT: Final = (
    f"install it with `npm install -g @openai/codex@{CODEX_VERSION}` or set ONESHOT_CODEX_BIN=/path/to/codex"
)
_MAKE_HOME: Final = (
    'set -e; home=$(mktemp -d "${HOME:-/tmp}/.oneshot-codex.XXXXXX"); '
    'printf %s "$1" > "$home/config.toml"; cat > "$home/models.json"; printf %s "$home"'
)
_FINISH_HOME: Final = 'cat "$1/last_message.md" 2>/dev/null; rm -rf "$1"'


class CodexAgent:
    """OpenAI Codex CLI (``codex exec``), pinned to :data:`CODEX_VERSION`.

    Options (all strings): ``model``; ``base_url`` of the Responses API (default the
    OpenAI API); ``api_key_env``, the variable in ``request.env`` or the host environment
    holding the key (default ``OPENAI_API_KEY``; none found means no key is sent). Both are
    used only without ``request.endpoint``, when the agent runs outside a trial;
    ``reasoning_effort``; ``codex_bin`` to override the binary lookup (:func:`find_codex`).
    """

    name = "codex"
    network: Network = "loopback"
    uses_model = True

    def __init__(self, options: Mapping[str, str]) -> None:
        self.model = options.get("model") or None
        self.base_url = options.get("base_url") or DEFAULT_BASE_URL
        self.api_key_env = options.get("api_key_env") or "OPENAI_API_KEY"
        self.reasoning_effort = options.get("reasoning_effort") or None
        if self.reasoning_effort not in (None, *REASONING_EFFORTS):
            raise OneshotError(
                f"agent 'codex': reasoning_effort must be one of {', '.join(REASONING_EFFORTS)} "
                f"(got {self.reasoning_effort!r})"
            )
        self.codex_bin = find_codex(options.get("codex_bin") or None)

    @staticmethod
    def session_options(options: Mapping[str, str]) -> dict[str, str]:
        """The codex binary, found once per session: finding it asks ``npm root -g``, a node process
        (~0.2 s of CPU) that each xdist worker would start again."""
        try:
            return {**options, "codex_bin": str(find_codex(options.get("codex_bin") or None))}
        except OneshotError:  # every agent made from these options says so, as an error of its item
            return dict(options)

    def mounts(self) -> Mapping[Path, str]:
        return {self.codex_bin: SANDBOX_CODEX_BIN}

    def run(self, sandbox: Sandbox, request: AgentRequest) -> AgentResult:
        model = request.model or self.model
        if not model:
            raise InfraError("agent", "codex needs a model: pass --oneshot-model=NAME")
        request.log_dir.mkdir(parents=True, exist_ok=True)
        if request.endpoint is not None:
            return self._run(sandbox, request, model, request.endpoint)
        api_key = request.env.get(self.api_key_env) or os.environ.get(self.api_key_env)
        with ModelGateway(self.base_url, api_key=api_key) as gateway:  # on its own: a private gateway
            route = gateway.open("codex", limit=request.token_limit)
            result = route.settle(self._run(sandbox, request, model, route.endpoint))
        return result if result.usage is not None else replace(result, usage=route.usage)

    def _run(self, sandbox: Sandbox, request: AgentRequest, model: str, endpoint: ModelEndpoint) -> AgentResult:
        env = {name: value for name, value in request.env.items() if name != self.api_key_env}
        config = self.config_toml(model, endpoint.base_url, endpoint.headers)
        (request.log_dir / "config.toml").write_text(config, encoding="utf-8")
        home = _make_home(sandbox, config, model)
        with capped_output(request.log_dir / "codex.log") as log:  # events in a dropped middle are lost
            run = sandbox.exec(
                self.command(model, home, sandbox.workdir, request.instructions),
                env={**env, "CODEX_HOME": home},
                timeout=request.timeout_sec,
                output=log,
            )
        last_message = sandbox.exec(["sh", "-c", _FINISH_HOME, "sh", home], timeout=60).stdout
        (request.log_dir / "last_message.md").write_bytes(last_message)
        events = list(_events(request.log_dir / "codex.log"))
        with open(request.log_dir / "events.jsonl", "w", encoding="utf-8") as out:
            out.writelines(json.dumps(event) + "\n" for event in events)
        return _result(run, events, request.timeout_sec)

    def config_toml(self, model: str, base_url: str, headers: Mapping[str, str] | None = None) -> str:
        """``config.toml`` for one run: no key in it, nothing but ``base_url`` contacted, ``headers`` sent."""
        lines = [
            f"model = {_toml(model)}",
            'model_provider = "oneshot"',
            'model_catalog_json = "models.json"  # relative to CODEX_HOME',
        ]
        if self.reasoning_effort:
            lines.append(f"model_reasoning_effort = {_toml(self.reasoning_effort)}")
        lines += [
            "",
            "[model_providers.oneshot]",
            'name = "pytest-oneshot"',
            f"base_url = {_toml(base_url)}",
            'wire_api = "responses"',
            *([f"http_headers = {_toml_table(headers)}"] if headers else []),
            "request_max_retries = 0",
            "stream_max_retries = 0",
            "",
            "[analytics]",
            "enabled = false",
            "",
            "[features]",
            "plugins = false",
        ]
        return "\n".join(lines) + "\n"

    def command(self, model: str, home: str, workdir: str, instructions: str) -> list[str]:
        return [
            SANDBOX_CODEX_BIN,
            "exec",
            "--dangerously-bypass-approvals-and-sandbox",  # the sandbox is ours
            "--skip-git-repo-check",
            "--json",
            "-o",
            f"{home}/last_message.md",
            "-C",
            workdir,
            "-m",
            model,
            "--",
            instructions,
        ]


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _toml_table(values: Mapping[str, str]) -> str:
    return "{ " + ", ".join(f"{_toml(key)} = {_toml(value)}" for key, value in values.items()) + " }"


def _make_home(sandbox: Sandbox, config: str, model: str) -> str:
    """Create the run's CODEX_HOME inside the sandbox; return its sandbox path."""
    catalog = json.dumps(catalog_for([model])).encode()
    made = sandbox.exec(["sh", "-c", _MAKE_HOME, "sh", config], stdin=catalog, timeout=60)
    if not made.ok or not made.stdout.strip():
        raise InfraError("agent", f"could not create CODEX_HOME in the sandbox: {made.text().strip()[-500:]}")
    return made.stdout.decode().strip()


def _events(log: Path) -> Iterator[dict[str, Any]]:
    """The JSONL events in codex's output (stderr lines are interleaved and skipped)."""
    if not log.is_file():
        return
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and "type" in event:
                yield event


def _usage(events: list[dict[str, Any]]) -> TokenUsage | None:
    """Codex's own total from ``turn.completed``; None when it reported none."""
    reported = [event.get("usage") or {} for event in events if event["type"] == "turn.completed"]
    if not reported:
        return None
    return TokenUsage(**{name: sum(int(usage.get(name) or 0) for usage in reported) for name in USAGE_KEYS})


def _failure(events: list[dict[str, Any]]) -> str:
    for event in reversed(events):
        if event["type"] == "turn.failed":
            return str((event.get("error") or {}).get("message", "turn failed"))
        if event["type"] == "error":
            return str(event.get("message", "error"))
    return ""


def _result(run: ExecResult, events: list[dict[str, Any]], timeout_sec: float) -> AgentResult:
    """What codex's exit and events say; a refusal by the gateway is settled by the route owner."""
    usage = _usage(events)
    if run.timed_out:
        return AgentResult(
            "timeout", f"codex still running at the {timeout_sec:g}s agent timeout", run.returncode, usage
        )
    failure = _failure(events)
    if run.returncode != 0 or failure or not any(event["type"] == "turn.completed" for event in events):
        return AgentResult(
            "agent_error", failure or f"codex exited {run.returncode} (see codex.log)", run.returncode, usage
        )
    return AgentResult("completed", exit_code=run.returncode, usage=usage)


def find_codex(explicit: str | None = None) -> Path:
    """The codex binary to mount: ``explicit``, else ``$ONESHOT_CODEX_BIN``, else the static
    musl binary of an npm install of ``@openai/codex``, else ``codex`` on PATH.

    Raises:
        OneshotError: nothing found, or a given path is not a file.
    """
    chosen = explicit or os.environ.get("ONESHOT_CODEX_BIN")
    if not chosen:
        return _checked(_discover())
    path = Path(chosen).expanduser()
    if not path.is_file():
        raise OneshotError(f"codex binary {chosen!r} is not a file; {_INSTALL_HINT}")
    return _checked(path.resolve())


@functools.cache
def _discover() -> Path:
    for root in _npm_roots():
        if binary := _vendor_binary(root):
            return binary
    on_path = shutil.which("codex")
    if on_path is None:
        raise OneshotError(f"codex CLI not found; {_INSTALL_HINT}")
    resolved = Path(on_path).resolve()
    if resolved.suffix != ".js":
        return resolved
    binary = _vendor_binary(resolved.parents[3])  # the npm shim: <root>/@openai/codex/bin/codex.js
    if binary is None:
        raise OneshotError(f"{on_path} is the npm shim but its platform binary is missing; {_INSTALL_HINT}")
    return binary


def _npm_roots() -> Iterator[Path]:
    try:
        found = subprocess.run(
            ["npm", "root", "-g"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        found = ""
    for root in dict.fromkeys(filter(None, (found, *_NPM_ROOTS))):
        yield Path(root)


def _vendor_binary(npm_root: Path) -> Path | None:
    """The static binary in an npm tree, hoisted or nested under ``@openai/codex``."""
    arch, triple = _PLATFORMS.get(platform.machine(), ("x64", "x86_64"))
    tail = Path(f"@openai/codex-linux-{arch}/vendor/{triple}-unknown-linux-musl/bin/codex")
    for candidate in (npm_root / tail, npm_root / "@openai/codex/node_modules" / tail):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _checked(binary: Path) -> Path:
    """``binary``, after warning if it is not the version the model catalog was made for."""
    try:
        version = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        ).stdout.split()
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OneshotError(f"codex binary {binary} does not run: {exc}; {_INSTALL_HINT}") from None
    if not version or version[-1] != CODEX_VERSION:
        warnings.warn(
            f"codex at {binary} is version {version[-1] if version else 'unknown'}; pytest-oneshot is tested "
            f"with {CODEX_VERSION}: {_INSTALL_HINT}",
            stacklevel=3,
        )
    return binary
