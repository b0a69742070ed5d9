"""Run settings, resolved once per session: CLI > ``ONESHOT_*`` env > ini > default.

The options themselves are declared in :data:`pytest_oneshot.options.OPTIONS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from oneshot_shared.paths import cache_dir
from pytest_oneshot.errors import OneshotError
from pytest_oneshot.options import OPTIONS, Option


class SettingsError(OneshotError):
    """A bad option value; the plugin turns it into a pytest UsageError."""


class OneshotSettings(BaseModel):
    """The effective settings of one session (identical on the controller and xdist workers)."""

    model_config = ConfigDict(frozen=True)

    agent: str
    agent_cmd: str
    base_url: str
    api_key_env: str
    reasoning_effort: str
    codex_bin: str
    models: tuple[str, ...]
    """Empty when none was given: model agents then replay the tasks' cassettes."""
    rollouts: int
    concurrency: int
    sandbox: str
    docker_image: str
    timeout: float | None
    runs_dir: Path
    min_score: float | None
    json_path: Path | None
    trace: bool
    prices: Path | None
    min_pass_rate: float | None
    gate_on: str
    min_mean_score: float | None
    baseline: Path | None
    max_regression: float
    max_errors: int | None
    cache_dir: Path
    run_id: str
    judge: str = "openai"
    judge_model: str = ""
    """Empty: judged only by replay, for replayed agents whose task has recorded judge answers."""
    judge_base_url: str = ""
    judge_api_key_env: str = "OPENAI_API_KEY"
    judge_concurrency: int = 4
    judge_timeout: float = 120.0
    overrides: Path | None = None
    """The run's overrides file (each task's own overrides.json applies first)."""
    hf: str | None = None
    """A Hugging Face dataset (``REPO_ID[@REVISION]``) whose tasks the run collects."""
    runner_model: str = ""
    runner_base_url: str = ""
    runner_api_key_env: str = "OPENAI_API_KEY"
    runner_api: str = "chat"
    runner_n: int = 1
    runner_max_tokens: int = 16
    runner_temperature: float = 0.9
    modal_app: str = "pytest-oneshot"
    modal_image: str = ""
    validate_tasks: bool = False
    """--oneshot-validate: add the oracle and nop items of each task."""
    validate_runs: int = 1

    @property
    def gating(self) -> bool:
        """Whether gates, not item failures, decide the exit status (any gate option set)."""
        gates = (self.min_pass_rate, self.min_mean_score, self.baseline, self.max_errors)
        return any(gate is not None for gate in gates)

    resume: Path | None = None
    """The run directory being continued (then ``runs_dir / run_id`` is this directory)."""
    html_path: Path | None = None

    def agent_options(self) -> dict[str, str]:
        """What agent factories receive; each agent reads the keys it knows."""
        return {
            "cmd": self.agent_cmd,
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "reasoning_effort": self.reasoning_effort,
            "codex_bin": self.codex_bin,
        }

    def judge_options(self) -> dict[str, str]:
        """What judge factories receive; each judge reads the keys it knows (never a key's value)."""
        return {
            "base_url": self.judge_base_url,
            "api_key_env": self.judge_api_key_env,
            "concurrency": str(self.judge_concurrency),
            "timeout": str(self.judge_timeout),
            "cache_dir": str(self.cache_dir),
        }

    def sandbox_options(self) -> dict[str, str]:
        """What sandbox backends receive in ``SandboxSpec.options``; each reads the keys it knows."""
        return {
            "docker_image": self.docker_image,
            "cache_dir": str(self.cache_dir),
            "modal_app": self.modal_app,
            "modal_image": self.modal_image,
        }


def _check_creatable_dir(path: Path, flag: str) -> None:
    """Fail at startup, not in every item's setup, when ``path`` can never become a writable directory.

    Nothing is created here: the plugin loads in every pytest run, most of which write no run dir.
    """
    existing = path
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling symlink: mkdir cannot go through it
            raise SettingsError(f"{flag}: cannot create {path}: {existing} is a dangling symlink")
        existing = existing.parent
    if not existing.is_dir():
        raise SettingsError(f"{flag}: cannot create {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SettingsError(f"{flag}: cannot create {path}: {existing} is not writable")


def _parse(option: Option, raw: str, source: str) -> Any:
    try:
        return option.parse(raw)
    except ValueError as exc:
        raise SettingsError(f"{source}: {exc} (got {raw!r})") from None


def resolve(
    cli: Mapping[str, Any],
    ini: Mapping[str, Any],
    environ: Mapping[str, str],
    *,
    base_dir: Path,
    run_id: str,
) -> OneshotSettings:
    """Merge the sources; ``cli`` maps option names to raw CLI values (None = not given)."""
    values: dict[str, Any] = {}
    given: set[str] = set()
    for option in OPTIONS:
        value = cli.get(option.name)
        if value is not None and not option.multiple:
            value = _parse(option, value, option.flag)
        if value is None and environ.get(option.env):
            raw = environ[option.env]
            value = [part for part in raw.split(",") if part] if option.multiple else _parse(option, raw, option.env)
        if value is None and ini.get(option.name):
            raw_ini = ini[option.name]
            value = list(raw_ini) if option.multiple else _parse(option, raw_ini, f"ini {option.key}")
        if value is not None:
            given.add(option.name)
        elif option.default is not None:
            value = _parse(option, option.default, option.flag)
        values[option.name] = value
    if "max_regression" in given and not values["baseline"]:
        raise SettingsError("--oneshot-max-regression: needs --oneshot-baseline PATH (a report.json to compare with)")
    runs_dir = Path(values["runs_dir"])
    runs_dir = runs_dir if runs_dir.is_absolute() else base_dir / runs_dir
    _check_creatable_dir(runs_dir, "--oneshot-runs-dir")
    resume = None if not values["resume"] else _resumable_run(base_dir / values["resume"])
    if resume is not None:
        runs_dir, run_id = resume.parent, resume.name
    json_path, prices, baseline, html = values["json"], values["prices"], values["baseline"], values["html"]
    models: Sequence[str] | None = values["model"]
    return OneshotSettings(
        agent=values["agent"],
        agent_cmd=values["agent_cmd"],
        base_url=values["base_url"],
        api_key_env=values["api_key_env"],
        reasoning_effort=values["reasoning_effort"],
        codex_bin=values["codex_bin"],
        models=tuple(models or ()),
        rollouts=values["rollouts"],
        concurrency=values["concurrency"],
        sandbox=values["sandbox"],
        docker_image=values["docker_image"],
        timeout=values["timeout"],
        runs_dir=runs_dir,
        min_score=values["min_score"],
        json_path=None if not json_path else base_dir / json_path,
        trace=values["trace"],
        prices=None if not prices else base_dir / prices,
        min_pass_rate=values["min_pass_rate"],
        gate_on=values["gate_on"],
        min_mean_score=values["min_mean_score"],
        baseline=None if not baseline else base_dir / baseline,
        max_regression=values["max_regression"],
        max_errors=values["max_errors"],
        cache_dir=cache_dir(environ),
        run_id=run_id,
        resume=resume,
        html_path=None if not html else base_dir / html,
        **{name: values[name] for name in _JUDGE_OPTIONS},
        overrides=None if not values["overrides"] else base_dir / values["overrides"],
        hf=values["hf"],
        **{name: values[name] for name in _RUNNER_OPTIONS},
        **{name: values[name] for name in _MODAL_OPTIONS},
        validate_tasks=values["validate"],
        validate_runs=values["validate_runs"],
    )


_MODAL_OPTIONS = ("modal_app", "modal_image")
_JUDGE_OPTIONS = ("judge", "judge_model", "judge_base_url", "judge_api_key_env", "judge_concurrency", "judge_timeout")
_RUNNER_OPTIONS = tuple(option.name for option in OPTIONS if option.name.startswith("runner_"))


def _resumable_run(path: Path) -> Path:
    """``path`` as an absolute run directory, or an error saying why it is not one."""
    path = path.resolve()
    if not path.is_dir():
        raise SettingsError(f"--oneshot-resume: {path}: no such run directory")
    if not (path / "report.json").is_file() and not any(path.glob("*/evaluation_results.json")):
        raise SettingsError(
            f"--oneshot-resume: {path}: not a run directory (no report.json and no <item>/evaluation_results.json)"
        )
    return path
