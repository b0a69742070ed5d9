"""The Agent extension point: something that changes the workspace given the instructions.

An agent runs inside the sandbox through :meth:`Sandbox.exec` and must stop at
``request.timeout_sec``; whatever it changed by then is still scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from pytest_oneshot.registry import Registry
from pytest_oneshot.sandbox import Network, Sandbox
from pytest_oneshot.task import Task
from pytest_oneshot.usage import TokenUsage

__all__ = [
    "Agent",
    "AgentFactory",
    "AgentRequest",
    "AgentResult",
    "ModelEndpoint",
    "TokenUsage",
    "default_agent_registry",
]

AgentStatus = Literal["completed", "timeout", "agent_error", "token_limit"]


@dataclass(frozen=True)
class ModelEndpoint:
    """Where an agent sends its model requests during one trial.

    A loopback route of the harness's model gateway (:mod:`pytest_oneshot.model.gateway`): it adds
    the API key, counts tokens and enforces the token limit, so the agent needs no key.
    """

    base_url: str
    """Responses API base URL (``POST {base_url}/responses``)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Send these with every request (the trace session id when tracing)."""


@dataclass(frozen=True)
class AgentRequest:
    """One agent run. ``task`` is the host-side task: only the oracle may read its answer."""

    task: Task
    instructions: str
    model: str | None
    timeout_sec: float
    log_dir: Path
    """Host directory (inside the run dir) for the agent's logs and artifacts."""
    token_limit: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    """Secrets and settings for the agent process only; never written to disk."""
    endpoint: ModelEndpoint | None = None
    """The trial's model route, overriding the agent's configured base URL and key; the
    harness sets it for agents that use a model."""


@dataclass(frozen=True)
class AgentResult:
    status: AgentStatus
    message: str = ""
    exit_code: int | None = None
    usage: TokenUsage | None = None


class Agent(Protocol):
    """A coding agent. ``network`` says what the sandbox must allow for it to work;
    ``uses_model`` says whether ``--oneshot-model`` means anything to it (one item per model)."""

    name: str
    network: Network
    uses_model: bool

    def mounts(self) -> Mapping[Path, str]:
        """Host paths the agent needs inside the sandbox (read-only), e.g. its binary."""

    def run(self, sandbox: Sandbox, request: AgentRequest) -> AgentResult:
        """Work on the task inside ``sandbox`` until done or ``request.timeout_sec``."""


class AgentFactory(Protocol):
    def __call__(self, options: Mapping[str, str]) -> Agent: ...


@runtime_checkable
class SessionOptions(Protocol):
    """An agent factory with options worth finding once per session rather than once per pytest
    process: with xdist the controller finds them and its workers take them as given."""

    def session_options(self, options: Mapping[str, str]) -> dict[str, str]:
        """``options`` with what the factory finds filled in; what it cannot find is left for the agent
        made from them to report."""


def default_agent_registry() -> Registry[AgentFactory]:
    registry: Registry[AgentFactory] = Registry("agent", "pytest_oneshot.agents")
    registry.register("oracle", "pytest_oneshot.agent.builtin:OracleAgent")
    registry.register("nop", "pytest_oneshot.agent.builtin:NopAgent")
    registry.register("command", "pytest_oneshot.agent.builtin:CommandAgent")
    registry.register("codex", "pytest_oneshot.agent.codex:CodexAgent")
    registry.load_entry_points()
    return registry
