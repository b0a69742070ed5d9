"""The Codex Runner as a second collector: each question of a ``*.runner.toml`` file is a pytest item.

The item's setup generates ``--oneshot-runner-n`` completions (unless the file already holds some,
e.g. cleaned by hand: those are graded as they are) and runs them against the testcases in the
session's sandbox; a problem of the endpoint or the sandbox is a pytest *error*. The item passes
when at least one completion passes every testcase. Each item writes its enriched question to
``runs/<run_id>/runner/<item>.toml``; at the end of the session the controller gathers them into
``runs/<run_id>/runner.toml`` and ``runner.csv`` (:mod:`pytest_oneshot.runner.summary`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, cast

import pytest

from pytest_oneshot.errors import OneshotError, TaskFormatError
from pytest_oneshot.runner.completions import GenerationSettings, generate_completions
from pytest_oneshot.runner.execute import run_questions
from pytest_oneshot.runner.questions import Completion, Question, load_questions, write_questions
from pytest_oneshot.runner.summary import summarize, write_csv
from pytest_oneshot.settings import OneshotSettings
from pytest_oneshot.stash import registries_key, settings_key

__all__ = ["RunnerFile", "RunnerItem", "generation_settings", "write_session_results"]


class QuestionFailed(Exception):
    """No completion passed every testcase; the message gives the figures."""


def generation_settings(settings: OneshotSettings) -> GenerationSettings:
    return GenerationSettings(
        model=settings.runner_model,
        base_url=settings.runner_base_url,
        api_key_env=settings.runner_api_key_env,
        api=cast(Literal["chat", "completions"], settings.runner_api),
        n=settings.runner_n,
        max_tokens=settings.runner_max_tokens,
        temperature=settings.runner_temperature,
    )


def _results_dir(settings: OneshotSettings) -> Path:
    return settings.runs_dir / settings.run_id / "runner"


class RunnerFile(pytest.File):
    """A question file: one item per question, or one collection error naming the file and field."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            questions = load_questions(self.path)
        except TaskFormatError as exc:
            raise self.CollectError(str(exc)) from None
        for question in questions:
            item = RunnerItem.from_parent(self, name=question.id, question=question)
            item.add_marker("oneshot")
            yield item


class RunnerItem(pytest.Item):
    def __init__(self, *, question: Question, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.question = question.model_copy(deep=True)

    def setup(self) -> None:
        settings = self.config.stash[settings_key]
        question = self.question
        try:
            if not question.completions:
                texts = generate_completions([question], generation_settings(settings))[0]
                question.completions = [Completion(completion=text) for text in texts]
            factory = self.config.stash[registries_key].sandbox.get(settings.sandbox)
            run_questions(
                [question],
                factory,
                cache_dir=settings.cache_dir,
                run_id=settings.run_id,
                options=settings.sandbox_options(),
            )
        except OneshotError as exc:
            pytest.fail(f"{self.nodeid}: {exc}", pytrace=False)
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", self.nodeid)
        write_questions(_results_dir(settings) / f"{name}.toml", [question])
        summary = summarize(question)
        self.user_properties.append(("oneshot.runner.passing", f"{summary.passing}/{summary.completions}"))
        self.user_properties.append(("oneshot.runner.mean_pass_ratio", f"{summary.mean_pass_ratio or 0.0:.4f}"))
        for k, value in summary.pass_at.items():
            self.user_properties.append((f"oneshot.runner.pass@{k}", f"{value:.4f}"))

    def runtest(self) -> None:
        summary = summarize(self.question)
        if not summary.passing:
            ratios = ", ".join(f"{ratio:.2f}" for ratio in summary.pass_ratios) or "none"
            raise QuestionFailed(
                f"no completion passed every testcase: 0/{summary.completions} passing, pass ratios {ratios}"
            )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, QuestionFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"runner question {self.name}"


def write_session_results(settings: OneshotSettings) -> Path | None:
    """Gather the items' enriched questions into ``runner.toml`` and ``runner.csv``; the CSV's path."""
    folder = _results_dir(settings)
    if not folder.is_dir():
        return None
    questions = [question for path in sorted(folder.glob("*.toml")) for question in load_questions(path)]
    write_questions(folder.parent / "runner.toml", questions)
    write_csv(folder.parent / "runner.csv", questions)
    return folder.parent / "runner.csv"
