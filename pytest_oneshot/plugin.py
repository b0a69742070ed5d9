"""pytest entry point: options, settings, registries and the hooks that glue them to the items.

Only module-level hooks live here; stateful parts are plugin objects registered in
``pytest_configure`` (the session report on the controller).
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import pytest

from oneshot_shared.errors import OneshotError
from pytest_oneshot import hookspecs
from pytest_oneshot.options import OPTIONS
from pytest_oneshot.stash import (
    Registries,
    agent_options_key,
    dataset_key,
    gateway_key,
    overrides_key,
    registries_key,
    replay_key,
    settings_key,
    trial_key,
)

if TYPE_CHECKING:
    from pytest_oneshot.model.gateway import RouteHost
    from pytest_oneshot.overrides import OverridesFile
    from pytest_oneshot.settings import OneshotSettings

# pytest imports this module in every process, a task's own test run inside a sandbox included
# (where the plugin is inert): what only a session needs is imported in the hooks that use it.

# Set when a collection error came from something other than a task directory.
_other_collect_error_key = pytest.StashKey[bool]()
# The controller's report plugins, unregistered when the session's config ends.
_reports_key = pytest.StashKey[list[object]]()


def _inert(config: pytest.Config) -> bool:
    """Inside a sandbox the plugin must not collect tasks: the hidden tests run there."""
    return bool(os.environ.get("ONESHOT_IN_SANDBOX")) or settings_key not in config.stash


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("oneshot", "Run agent-evaluation tasks as tests")
    for option in OPTIONS:
        group.addoption(option.flag, **option.addoption_kwargs())
        ini_type: Literal["args", "string"] = "args" if option.multiple else "string"
        parser.addini(option.key, option.help, type=ini_type, default=None)


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "oneshot: a pytest-oneshot task item")
    config.addinivalue_line("markers", "oneshot_validate: a --oneshot-validate item (oracle or nop)")
    if os.environ.get("ONESHOT_IN_SANDBOX"):
        return
    from pytest_oneshot.agent import default_agent_registry
    from pytest_oneshot.judge import default_judge_registry
    from pytest_oneshot.model.gateway import ModelGateway
    from pytest_oneshot.model.replay import ReplayService
    from pytest_oneshot.sandbox import default_sandbox_registry
    from pytest_oneshot.sandbox.progress import show_progress_through
    from pytest_oneshot.settings import resolve

    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    run_id = workerinput["oneshot_run_id"] if workerinput else _new_run_id()
    cli = {option.name: config.getoption(option.key) for option in OPTIONS}
    ini = {option.name: config.getini(option.key) for option in OPTIONS}
    registries = Registries(
        sandbox=default_sandbox_registry(), agent=default_agent_registry(), judge=default_judge_registry()
    )
    config.hook.pytest_oneshot_register(registries=registries)
    try:
        settings = resolve(cli, ini, os.environ, base_dir=config.invocation_params.dir, run_id=run_id)
        gateway = ModelGateway.from_settings(settings, host=functools.partial(_route_host, registries, settings))
    except OneshotError as exc:
        raise pytest.UsageError(str(exc)) from None
    chosen = (
        (registries.sandbox, settings.sandbox),
        (registries.agent, settings.agent),
        (registries.judge, settings.judge),
    )
    for registry, name in chosen:
        if name not in registry.names():
            raise pytest.UsageError(
                f"--oneshot-{registry.kind}: unknown {registry.kind} {name!r} (known: {', '.join(registry.names())})"
            )
    config.stash[settings_key] = settings
    config.stash[registries_key] = registries
    if workerinput is not None and "oneshot_agent_options" in workerinput:
        config.stash[agent_options_key] = dict(workerinput["oneshot_agent_options"])
    config.stash[overrides_key] = _run_overrides(settings)
    if settings.hf:
        _use_dataset(config, settings, workerinput)
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:  # image and environment builds take minutes: show their progress lines live
        show_progress_through(capture.global_and_fixture_disabled)
    config.stash[replay_key] = ReplayService()
    config.stash[gateway_key] = gateway
    if workerinput is None:
        _register_reports(config, settings)


def _route_host(registries: Registries, settings: OneshotSettings) -> RouteHost | None:
    """The sandbox's own model gateway host (``model_route_host(options, run_id)``: a remote backend's, whose
    agents cannot reach this machine's loopback); None: the loopback gateway. Asked when a route first opens."""
    make = getattr(registries.sandbox.get(settings.sandbox), "model_route_host", None)
    return None if make is None else cast("RouteHost", make(settings.sandbox_options(), settings.run_id))


def _run_overrides(settings: OneshotSettings) -> OverridesFile | None:
    """The run's overrides file, read once (a bad one is a usage error naming the file and key)."""
    if settings.overrides is None:
        return None
    from pytest_oneshot.overrides import load_overrides

    try:
        return load_overrides(settings.overrides)
    except OneshotError as exc:
        raise pytest.UsageError(f"--oneshot-overrides: {exc}") from None


def _use_dataset(config: pytest.Config, settings: OneshotSettings, workerinput: dict[str, Any] | None) -> None:
    """``--oneshot-hf``: the controller downloads the dataset (cached, revision resolved to a sha) and
    workers reuse its copy; its tasks are collected in place of (or besides explicit) paths."""
    if workerinput is not None:
        dataset = dict(workerinput["oneshot_dataset"])
    else:
        from pytest_oneshot.hf.hub import fetch_dataset

        assert settings.hf is not None
        try:
            dataset = fetch_dataset(settings.hf, settings.cache_dir)
        except OneshotError as exc:
            raise pytest.UsageError(f"--oneshot-hf: {exc}") from None
    config.stash[dataset_key] = dataset
    given = config.args_source == pytest.Config.ArgsSource.ARGS
    config.args = [*(config.args if given else []), dataset["tasks_dir"]]


def _register_reports(config: pytest.Config, settings: OneshotSettings) -> None:
    """Controller only: the session report, and in gating mode the gates (a bad baseline is a usage error)."""
    from pytest_oneshot.report.session import SessionReport

    registered = config.stash[_reports_key] = []

    def register(plugin: object, name: str) -> None:
        config.pluginmanager.register(plugin, name)
        registered.append(plugin)

    report = SessionReport(config, settings, config.stash.get(dataset_key, None))
    register(report, SessionReport.plugin_name)
    if settings.validate_tasks:
        from pytest_oneshot.validate import ValidationSummary

        register(ValidationSummary(), ValidationSummary.plugin_name)
    if not settings.gating:
        return
    from pytest_oneshot.report.baseline import load_baseline
    from pytest_oneshot.report.gates import SessionGates

    try:
        baseline = None if settings.baseline is None else load_baseline(settings.baseline)
    except OneshotError as exc:
        raise pytest.UsageError(f"--oneshot-baseline: {exc}") from None
    register(SessionGates(settings, report, baseline), SessionGates.plugin_name)


def pytest_unconfigure(config: pytest.Config) -> None:
    if gateway_key in config.stash:
        config.stash[gateway_key].close()
    if replay_key in config.stash:
        config.stash[replay_key].close()
    for plugin in config.stash.get(_reports_key, []):
        if config.pluginmanager.is_registered(plugin):
            config.pluginmanager.unregister(plugin)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: every worker uses the controller's run id, so all items share one runs/<run_id>/."""
    from pytest_oneshot.collect import agent_options

    node.workerinput["oneshot_run_id"] = node.config.stash[settings_key].run_id
    node.workerinput["oneshot_agent_options"] = agent_options(node.config)
    if dataset_key in node.config.stash:
        node.workerinput["oneshot_dataset"] = node.config.stash[dataset_key]


@pytest.hookimpl(optionalhook=True, trylast=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``--dist load``, keep each worker fed enough items for its trial pool to run and start
    trials ahead (see :mod:`pytest_oneshot.concurrency`)."""
    if _inert(config) or config.getvalue("dist") != "load":
        return None
    from pytest_oneshot.concurrency import xdist_scheduler

    return xdist_scheduler(config, log, config.stash[settings_key].concurrency)


@pytest.hookimpl(wrapper=True)
def pytest_sessionstart(session: pytest.Session) -> Generator[None]:
    """Controller only: let the sandbox backend remove what dead runs left behind (e.g. containers).

    Done after the other plugins' session start, so xdist's workers boot meanwhile (it only removes
    what dead runs own, so it can overlap their trials). A sandbox that cannot be loaded is a usage
    error here, before any trial: it is the session's one choice, so every item would fail alike.
    """
    yield
    if _inert(session.config) or hasattr(session.config, "workerinput"):
        return
    settings = session.config.stash[settings_key]
    try:
        factory = session.config.stash[registries_key].sandbox.get(settings.sandbox)
    except OneshotError as exc:
        raise pytest.UsageError(f"--oneshot-sandbox: {exc}") from None
    if not callable(getattr(factory, "cleanup_stale", None)):
        raise pytest.UsageError(
            f"--oneshot-sandbox: sandbox {settings.sandbox!r} has no cleanup_stale(options) (see SandboxFactory)"
        )
    with contextlib.suppress(OneshotError):  # e.g. no engine: every trial reports it as its own error
        factory.cleanup_stale(settings.sandbox_options())


def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """A task directory: ``tb_meta.json``, or a Harbor task (``task.toml`` and ``instruction.md``)."""
    if _inert(parent.config):
        return None
    from pytest_oneshot.task import META_FILE

    meta = path / META_FILE
    harbor = (path / "task.toml").is_file() and (path / "instruction.md").is_file()
    if not (meta.exists() or meta.is_symlink() or harbor):  # a dir or dangling link: report it
        return None
    from pytest_oneshot.collect import TaskDirectory

    return TaskDirectory.from_parent(parent, path=path)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """A Codex Runner question file (``*.runner.toml``): one item per question."""
    if _inert(parent.config) or not file_path.name.endswith(".runner.toml"):
        return None
    from pytest_oneshot.runner.collect import RunnerFile

    return RunnerFile.from_parent(parent, path=file_path)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Controller only: gather the runner questions' results into ``runner.toml`` and ``runner.csv``."""
    if _inert(session.config) or hasattr(session.config, "workerinput"):
        return
    from pytest_oneshot.runner.collect import write_session_results

    csv_path = write_session_results(session.config.stash[settings_key])
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if csv_path is not None and reporter is not None:
        reporter.write_line(f"oneshot runner: results in {csv_path}")


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if _inert(config):
        return None
    settings = config.stash[settings_key]
    models = ", ".join(settings.models) or "-"
    judge = settings.judge_model or "replay where recorded, else none"
    resumed = " (resumed)" if settings.resume else ""
    lines = [
        f"oneshot: agent={settings.agent} model={models} sandbox={settings.sandbox} "
        f"rollouts={settings.rollouts} run={settings.runs_dir / settings.run_id}{resumed}",
        f"oneshot judge: {settings.judge} model={judge}",
    ]
    if settings.overrides:
        lines.append(f"oneshot overrides: {settings.overrides}")
    if dataset_key in config.stash:
        dataset = config.stash[dataset_key]
        lines.append(f"oneshot dataset: {dataset['repo_id']}@{dataset['sha']} ({dataset['tasks_dir']})")
    return lines


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the JSON-able trial result to the report, so xdist carries it to the controller."""
    report = yield
    result = item.stash.get(trial_key, None)
    if result is not None and (report.when == "call" or (report.when == "setup" and report.failed)):
        report.oneshot = result.model_dump(mode="json")
        if getattr(item, "resumed", None) is not None:
            report.oneshot["resumed"] = True  # recorded by the run being resumed, not run now
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    report = yield
    if not report.failed or _inert(collector.config):
        return report
    from pytest_oneshot.collect import TaskDirectory

    if not isinstance(collector, TaskDirectory):
        collector.config.stash[_other_collect_error_key] = True
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """A malformed task is a collection error, but it must not stop the valid tasks from running.

    Other collection errors keep pytest's default (abort unless --continue-on-collection-errors).
    """
    if session.testsfailed and not session.config.stash.get(_other_collect_error_key, False):
        session.config.option.continue_on_collection_errors = True
