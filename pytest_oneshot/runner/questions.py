"""Codex Runner question files: read and write the TOML that carries questions, completions and results.

The format is the original Codex Runner's, so files move between it and here, and a human can
clean completions between the steps (generate, run the tests, write the results)::

    [[questions]]
    id = "add"
    prompt = "Write a function add(a, b) returning the sum."
    answer_preload = "def add(a, b):"        # optional: the answer's start; the model continues it
    timeout_sec = 10                          # ours, optional: per testcase run

    [[questions.testcases]]
    code = "print(add(*map(int, input().split())))"
    stdin = "1 2"
    expect = "3"

    [[questions.completions]]                 # written by `oneshot runner generate`
    completion = " return a + b"
    results = [true]                          # written by `oneshot runner run-tests`: one per testcase

A file is recognised by pytest when its name ends in ``.runner.toml``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pytest_oneshot.errors import TaskFormatError
from pytest_oneshot.files import write_atomic

__all__ = ["RUNNER_SUFFIX", "Completion", "Question", "QuestionFile", "Testcase", "load_questions", "write_questions"]

RUNNER_SUFFIX = ".runner.toml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Testcase(_Model):
    """``code`` runs after the answer; its stdout, given ``stdin``, must be ``expect``."""

    __test__ = False
    code: str
    stdin: str = ""
    expect: str


class Completion(_Model):
    completion: str
    results: list[bool] | None = None
    """One per testcase, in order; None until the tests ran."""

    @property
    def pass_ratio(self) -> float | None:
        """Share of testcases this completion passed (None before the tests ran)."""
        if self.results is None:
            return None
        return sum(self.results) / len(self.results) if self.results else 0.0

    @property
    def passed(self) -> bool:
        """Passed every testcase (a question without testcases is never passed)."""
        return bool(self.results) and all(self.results or ())


class Question(_Model):
    id: str = Field(..., min_length=1)
    prompt: str
    answer_preload: str | None = None
    timeout_sec: float = Field(10.0, gt=0)
    testcases: list[Testcase] = Field(default_factory=list)
    completions: list[Completion] = Field(default_factory=list)

    @property
    def model_prompt(self) -> str:
        """What the model is asked to continue: the prompt, then the answer's preloaded start."""
        return self.prompt if self.answer_preload is None else f"{self.prompt}\n\n{self.answer_preload}"

    def program(self, completion: str, testcase: Testcase) -> str:
        """The program a testcase runs: preload + completion (its continuation) + the testcase's code."""
        return f"{self.answer_preload or ''}{completion}\n{testcase.code}\n"


class QuestionFile(_Model):
    questions: list[Question] = Field(..., min_length=1)


def _field(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_questions(path: Path) -> list[Question]:
    """Read a question file.

    Raises:
        TaskFormatError: naming the file and the field at fault.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskFormatError(str(path), None, "file not found") from None
    except OSError as exc:
        raise TaskFormatError(str(path), None, f"cannot be read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TaskFormatError(str(path), None, f"not valid TOML: {exc}") from None
    try:
        questions = QuestionFile.model_validate(raw).questions
    except ValidationError as exc:
        error = exc.errors()[0]
        kind = error.get("type")
        if kind == "missing":
            problem = "required field is missing"
        elif kind == "extra_forbidden":
            problem = "unknown field (check the spelling)"
        else:
            problem = f"{error.get('msg', 'invalid')} (got {error.get('input')!r})"
        raise TaskFormatError(str(path), _field(tuple(error.get("loc", ()))) or None, problem) from None
    seen: set[str] = set()
    for index, question in enumerate(questions):
        if question.id in seen:
            raise TaskFormatError(str(path), f"questions[{index}].id", f"duplicate question id {question.id!r}")
        seen.add(question.id)
        for number, completion in enumerate(question.completions):
            if completion.results is not None and len(completion.results) != len(question.testcases):
                raise TaskFormatError(
                    str(path),
                    f"questions[{index}].completions[{number}].results",
                    f"{len(completion.results)} results for {len(question.testcases)} testcases "
                    "(run `oneshot runner run-tests` again)",
                )
    return questions


def _plain(question: Question) -> dict[str, Any]:
    data = question.model_dump(exclude_none=True, exclude_defaults=True)
    for testcase in data.get("testcases", []):
        testcase.setdefault("stdin", "")  # the original format always has it
    return data


def write_questions(path: Path, questions: list[Question]) -> None:
    """Write the enriched file (multi-line strings as TOML's ``\"\"\"`` blocks, so it is easy to edit)."""
    text = tomli_w.dumps({"questions": [_plain(question) for question in questions]}, multiline_strings=True)
    write_atomic(path, text.encode("utf-8"))
