"""The option table: each option is declared once here and becomes ``--oneshot-<name>``, the ini key
``oneshot_<name>`` and the env var ``ONESHOT_<NAME>``, with one help text and one parser.

Kept free of the harness's other modules (and of pydantic): pytest imports the plugin in every
process, a task's own test run inside a sandbox included, and the plugin only needs this to add its
options there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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
