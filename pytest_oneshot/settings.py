"""Run settings, resolved once per session: CLI > ``ONESHOT_*`` env > ini > default.

Each option is declared once in :data:`OPTIONS` and becomes ``--oneshot-<name>``, the ini
key ``oneshot_<name>`` and the env var ``ONESHOT_<NAME>``, with one help text and one parser.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from oneshot_shared.paths import cache_dir
from pytest_oneshot.errors import OneshotError


class SettingsError(OneshotError):
    """A bad option value; the plugin turns it into a pytest UsageError."""


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be >= 1")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("must be > 0")
    return number


def _boolean(value: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off``, any case (env vars and ini keys are strings)."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false (1/0, yes/no, on/off)")


def _score(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError("must be between 0 and 1")
    return number


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be >= 0")
    return number


GATE_ON = ("lower", "mean")


def _temperature(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 2.0:
        raise ValueError("must be between 0 and 2")
    return number


def _runner_api(value: str) -> str:
    if value not in RUNNER_APIS:
        raise ValueError(f"must be one of {', '.join(RUNNER_APIS)}")
    return value


RUNNER_APIS = ("chat", "completions")


def _gate_on(value: str) -> str:
    if value not in GATE_ON:
        raise ValueError(f"must be one of {', '.join(GATE_ON)}")
    return value


def _hf_dataset(value: str) -> str:
    repo_id = value.partition("@")[0]
    if repo_id.count("/") != 1 or not all(repo_id.split("/")) or value.endswith("@"):
        raise ValueError("must be a dataset id OWNER/NAME, optionally @REVISION")
    return value


@dataclass(frozen=True)
class Option:
    name: str
    help: str
    default: str | None = None
    parse: Callable[[str], Any] = str
    multiple: bool = False
    metavar: str | None = None
    boolean: bool = False
    """A flag: on the command line it takes no value (it means ``true``)."""

    @property
    def flag(self) -> str:
        return "--oneshot-" + self.name.replace("_", "-")

    @property
    def key(self) -> str:
        return "oneshot_" + self.name

    @property
    def env(self) -> str:
        return "ONESHOT_" + self.name.upper()

    def addoption_kwargs(self) -> dict[str, Any]:
        """``parser.addoption`` arguments; a flag stores ``"true"``, so CLI, env and ini values parse alike."""
        kwargs: dict[str, Any] = {"dest": self.key, "default": None, "help": self.help}
        if self.boolean:
            return {**kwargs, "action": "store_const", "const": "true"}
        if self.default:
            kwargs["help"] += f" (default: {self.default})"
        return {**kwargs, "action": "append" if self.multiple else "store", "metavar": self.metavar}


OPTIONS: tuple[Option, ...] = (
    Option("agent", "Agent that attempts each task (codex, oracle, nop, command, ...)", "codex", metavar="NAME"),
    Option("agent_cmd", "Shell command run as the agent by --oneshot-agent=command", "", metavar="CMD"),
    Option(
        "model",
        "Model to evaluate, repeat for one item per model; 'replay' replays each task's recorded cassette",
        None,
        multiple=True,
        metavar="MODEL",
    ),
    Option("base_url", "Responses API base URL for model calls (default: the OpenAI API)", "", metavar="URL"),
    Option("api_key_env", "Environment variable holding the model API key", "OPENAI_API_KEY", metavar="VAR"),
    Option("reasoning_effort", "Reasoning effort passed to the model (low, medium, high, ...)", "", metavar="LEVEL"),
    Option("codex_bin", "Path of the codex binary (default: the pinned npm install)", "", metavar="PATH"),
    Option("rollouts", "Attempts per task and model", "1", _positive_int, metavar="N"),
    Option(
        "concurrency",
        "Agents running at once per pytest process: the next items' trials run in threads while the current "
        "one is reported, each trial's tests as the next agent starts (for model-bound runs; results still "
        "come in pytest's order)",
        "1",
        _positive_int,
        metavar="N",
    ),
    Option("sandbox", "Where trials run (local, docker, ...)", "local", metavar="NAME"),
    Option(
        "docker_image",
        "Base image for tasks without a Dockerfile (default: the local debootstrap one)",
        "",
        metavar="IMAGE",
    ),
    Option("modal_app", "Modal App the modal sandbox's Sandboxes belong to", "pytest-oneshot", metavar="NAME"),
    Option(
        "modal_image",
        "Registry image (with python3 and git) for tasks without a Dockerfile on the modal sandbox "
        "(default: Debian bookworm with python3, git and CA certificates, as the docker base)",
        "",
        metavar="IMAGE",
    ),
    Option(
        "timeout", "Agent phase timeout in seconds, overriding each task's limit", None, _positive_float, metavar="SEC"
    ),
    Option("runs_dir", "Directory receiving runs/<run_id>/<item>/", "runs", metavar="DIR"),
    Option("min_score", "Rubric score an item needs besides being resolved (0-1)", None, _score, metavar="SCORE"),
    Option("json", "Write a JSON report of all items to this path", None, metavar="PATH"),
    Option(
        "trace",
        "Record every model request of every trial through the tracing proxy (runs/<run_id>/traces.sqlite3, "
        "<item>/trace.json)",
        "false",
        _boolean,
        boolean=True,
    ),
    Option(
        "prices",
        "JSON file of model prices in USD per million tokens, added to the built-in table",
        None,
        metavar="PATH",
    ),
    # -- the rubric judge (rubrics no test scores) --
    Option("judge", "Judge that scores the rubrics no test scores (openai, or a plugin's)", "openai", metavar="NAME"),
    Option(
        "judge_model",
        "Model judging the rubrics no test scores; 'replay' replays each task's recorded judge answers "
        "(default: replay for a replayed agent whose task has them, else no judge: those rubrics stay unscored)",
        "",
        metavar="MODEL",
    ),
    Option("judge_base_url", "Responses API base URL of the judge (default: the OpenAI API)", "", metavar="URL"),
    Option("judge_api_key_env", "Environment variable holding the judge's API key", "OPENAI_API_KEY", metavar="VAR"),
    Option("judge_concurrency", "Judge calls in flight per pytest process", "4", _positive_int, metavar="N"),
    Option("judge_timeout", "Seconds one judge call may take", "120", _positive_float, metavar="SEC"),
    # -- task self-validation (pytest_oneshot/validate.py) --
    Option(
        "validate",
        "Add per task an item running the oracle (must pass) and one running nop (must fail)",
        "false",
        _boolean,
        boolean=True,
    ),
    Option(
        "validate_runs",
        "Oracle runs per task under --oneshot-validate; more than 1 flags flaky fail_to_pass tests",
        "1",
        _positive_int,
        metavar="N",
    ),
    # Gates (pytest_oneshot/report/gates.py): any of min_pass_rate, min_mean_score, baseline or
    # max_errors turns gating on; gate_on and max_regression only refine them.
    Option(
        "min_pass_rate",
        "Gate: each model's pass rate over all tasks must reach this (0-1); turns gating on",
        None,
        _score,
        metavar="RATE",
    ),
    Option(
        "gate_on",
        "Judge rate and score gates on the 95% interval's lower bound or on the mean (lower, mean)",
        "mean",
        _gate_on,
        metavar="WHAT",
    ),
    Option(
        "min_mean_score",
        "Gate: each model's mean rubric score must reach this (0-1); turns gating on",
        None,
        _score,
        metavar="SCORE",
    ),
    Option(
        "baseline",
        "Gate: compare with this stored report.json, task by task and overall; turns gating on",
        None,
        metavar="PATH",
    ),
    Option(
        "max_regression",
        "Largest tolerated drop in pass rate against --oneshot-baseline (0-1)",
        "0",
        _score,
        metavar="DROP",
    ),
    Option(
        "max_errors",
        "Gate: tolerate this many errored items (default in gating mode: 0); turns gating on",
        None,
        _count,
        metavar="N",
    ),
    Option(
        "resume",
        "Continue the run in RUN_DIR (same run id): items it finished are reported as recorded instead of run "
        "again; interrupted ones run again beside their old files",
        None,
        metavar="RUN_DIR",
    ),
    Option(
        "html",
        "Also write the self-contained HTML report here (always: runs/<run_id>/report.html)",
        None,
        metavar="PATH",
    ),
    # -- sharing tasks: overrides (pytest_oneshot/overrides.py) and Hugging Face datasets (pytest_oneshot/hf/) --
    Option(
        "overrides",
        "Overrides file (JSON or TOML) applied to every task of the run, after the task's own overrides.json",
        None,
        metavar="FILE",
    ),
    Option(
        "hf",
        "Run the tasks of this Hugging Face dataset (REPO_ID[@REVISION]), downloaded once into the cache dir",
        None,
        _hf_dataset,
        metavar="REPO",
    ),
    # -- the Codex Runner collector (*.runner.toml question files; pytest_oneshot/runner/) --
    Option("runner_model", "Model writing the completions of *.runner.toml questions", "", metavar="MODEL"),
    Option("runner_base_url", "OpenAI-compatible base URL of runner completions (default: OpenAI)", "", metavar="URL"),
    Option("runner_api_key_env", "Environment variable holding the runner's API key", "OPENAI_API_KEY", metavar="VAR"),
    Option("runner_api", "Request shape of runner completions (chat, completions)", "chat", _runner_api, metavar="API"),
    Option("runner_n", "Completions generated per runner question", "1", _positive_int, metavar="N"),
    Option("runner_max_tokens", "Max tokens of each runner completion", "16", _positive_int, metavar="N"),
    Option("runner_temperature", "Sampling temperature of runner completions", "0.9", _temperature, metavar="T"),
)


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
