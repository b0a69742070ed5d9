"""The Codex Runner: question files collected as items, completions from a scripted OpenAI-compatible
endpoint on 127.0.0.1, graded by stdin/stdout testcases in the local sandbox; the three CLI steps with a
human's edit between them; bad files as one-line errors naming the file and field."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_oneshot.model.cassette import HttpError, Turn, Usage, message
from pytest_oneshot.model.scripted import ScriptedResponsesServer

CANARY = "sk-runner-" + "canary-41c9e2"  # split so no source file matches a search for it

QUESTIONS = """
[[questions]]
id = "add"
prompt = "Complete add(a, b) so it returns the sum."
answer_preload = "def add(a, b):\\n"

[[questions.testcases]]
code = "print(add(*map(int, input().split())))"
stdin = "1 2"
expect = "3"

[[questions.testcases]]
code = "print(add(*map(int, input().split())))"
stdin = "5 0"
expect = "5\\n"

[[questions]]
id = "shout"
prompt = "Print the line read from stdin in upper case."

[[questions.testcases]]
code = ""
stdin = "abc"
expect = "ABC"
"""
ADD_COMPLETIONS = ["    return a + b", "    return a - b", "    return a * b", "```python\n    return b + a\n```"]
"""Pass ratios 1, 0.5 (5 - 0 = 5), 0, 1 (a chat fence is stripped): 2 of 4 pass every testcase."""
SHOUT_COMPLETIONS = ["print(input())", "print(input().lower())", "import sys; sys.exit(1)", "print('abc')"]


@pytest.fixture
def server() -> Iterator[ScriptedResponsesServer]:
    with ScriptedResponsesServer() as server:
        server.add_script(
            "default",
            [
                Turn(output=[message(text) for text in ADD_COMPLETIONS], usage=Usage(input_tokens=9, output_tokens=20)),
                Turn(output=[message(text) for text in SHOUT_COMPLETIONS]),
            ],
        )
        yield server


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def test_questions_run_as_items_with_pass_ratios_and_pass_at_k(
    pytester: pytest.Pytester, server: ScriptedResponsesServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    pytester.makefile(".runner.toml", basic=QUESTIONS)
    runs = pytester.path / "runs"
    result = pytester.runpytest_subprocess(
        "--oneshot-runner-model=codex-test",
        f"--oneshot-runner-base-url={server.base_url}",
        "--oneshot-runner-n=4",
        f"--oneshot-runs-dir={runs}",
        "--junitxml=junit.xml",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["no completion passed every testcase: 0/4 passing, pass ratios 0.00, 0.00, 0.00, 0.00"]
    )

    requests = server.requests()
    assert [request.body["n"] for request in requests] == [4, 4]
    first = requests[0].body
    assert (first["model"], first["max_tokens"], first["temperature"]) == ("codex-test", 16, 0.9)  # the defaults
    assert first["messages"] == [
        {"role": "user", "content": "Complete add(a, b) so it returns the sum.\n\ndef add(a, b):\n"}
    ]
    assert requests[0].headers["authorization"] == f"Bearer {CANARY}"

    (run_dir,) = runs.iterdir()
    rows = _rows(run_dir / "runner.csv")
    add, shout = rows["add"], rows["shout"]
    # By hand: n = 4, c = 2 -> pass@1 = 1 - C(2,1)/C(4,1) = 1/2, pass@2 = 1 - C(2,2)/C(4,2) = 5/6, pass@4 = 1.
    assert add["pass_ratios"] == "1.0000 0.5000 0.0000 1.0000"
    assert (add["passing"], add["mean_pass_ratio"]) == ("2", "0.6250")
    assert (add["pass@1"], add["pass@2"], add["pass@4"]) == ("0.5000", "0.8333", "1.0000")
    assert (shout["passing"], shout["pass@1"], shout["pass@4"]) == ("0", "0.0000", "0.0000")
    assert (rows["mean"]["pass@1"], rows["mean"]["pass@2"], rows["mean"]["mean_pass_ratio"]) == (
        "0.2500",
        "0.4167",
        "0.3125",
    )
    assert (rows["min"]["pass@4"], rows["max"]["pass@4"]) == ("0.0000", "1.0000")
    enriched = tomllib.loads((run_dir / "runner.toml").read_text())["questions"]
    results = [completion["results"] for completion in enriched[0]["completions"]]
    assert results == [[True, True], [False, True], [False, False], [True, True]]
    assert enriched[0]["completions"][3]["completion"] == "    return b + a"
    assert 'oneshot.runner.pass@2" value="0.8333"' in (pytester.path / "junit.xml").read_text()
    for path in [*run_dir.rglob("*"), pytester.path / "junit.xml"]:
        assert not path.is_file() or CANARY not in path.read_text(errors="replace"), path


def test_an_endpoint_error_is_an_item_error_naming_the_question(pytester: pytest.Pytester) -> None:
    with ScriptedResponsesServer() as server:
        server.add_script("default", [Turn(http_error=HttpError(status=400, body={"error": {"message": "bad model"}}))])
        pytester.makefile(".runner.toml", one=QUESTIONS.split('[[questions]]\nid = "shout"')[0])
        result = pytester.runpytest_subprocess(
            "--oneshot-runner-model=nope", f"--oneshot-runner-base-url={server.base_url}", "-p", "no:cacheprovider"
        )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*one.runner.toml::add: question 'add': {server.base_url}/chat/completions answered "
                                 'HTTP 400: {"error": {"message": "bad model"}}'])  # fmt: skip


def _oneshot(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest_oneshot.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)


def test_cli_three_steps_with_a_human_cleaning_completions_between(
    tmp_path: Path, server: ScriptedResponsesServer
) -> None:
    source = tmp_path / "questions.toml"
    source.write_text(QUESTIONS)
    generated, tested, table = tmp_path / "gen.toml", tmp_path / "tested.toml", tmp_path / "results.csv"

    run = _oneshot("runner", "generate", source, generated, "--model", "codex-test", "--base-url", server.base_url,
                   "--api", "completions", "--n", "4", "--max-tokens", "64", "--temperature", "0.2")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert server.requests()[1].body["prompt"] == "Print the line read from stdin in upper case."
    assert (server.requests()[0].body["max_tokens"], server.requests()[0].body["temperature"]) == (64, 0.2)
    text = generated.read_text()
    assert 'completion = "print(input().lower())"' in text
    generated.write_text(text.replace("print(input().lower())", "print(input().upper())"))  # the human's fix

    run = _oneshot("runner", "run-tests", generated, tested)
    assert run.returncode == 0, run.stderr
    run = _oneshot("runner", "write-results", tested, table)
    assert run.returncode == 0, run.stderr
    assert "shout: 1/4 passing pass@1=0.250" in run.stdout
    rows = _rows(table)
    # The legacy completions shape keeps a fence as text: "```python ..." is not Python, so add has c = 1 here.
    assert (rows["add"]["pass_ratios"], rows["add"]["pass@1"]) == ("1.0000 0.5000 0.0000 0.0000", "0.2500")
    assert (rows["shout"]["pass_ratios"], rows["shout"]["pass@4"]) == ("0.0000 1.0000 0.0000 0.0000", "1.0000")


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda text: text.replace('expect = "ABC"', ""), "questions[1].testcases[0].expect: required field"),
        (lambda text: text.replace('id = "shout"', 'id = "add"'), "questions[1].id: duplicate question id 'add'"),
        (lambda text: text.replace("stdin = ", "stdinn = ", 1), "questions[0].testcases[0].stdinn: unknown field"),
        (lambda text: text + "\n[[questions]\n", "not valid TOML"),
    ],
)
def test_a_bad_question_file_is_one_line_naming_file_and_field(
    tmp_path: Path, pytester: pytest.Pytester, edit: object, field: str
) -> None:
    assert callable(edit)
    bad = pytester.makefile(".runner.toml", bad=edit(QUESTIONS))
    result = pytester.runpytest_subprocess("--collect-only", "-p", "no:cacheprovider")
    assert f"{bad}: {field}" in result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "Traceback" not in result.stdout.str()

    run = _oneshot("runner", "run-tests", bad, tmp_path / "out.toml")
    (line,) = run.stderr.strip().splitlines()
    assert run.returncode == 2 and str(bad) in line and field in line, line


def test_results_written_before_the_tests_ran_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "q.toml"
    source.write_text(QUESTIONS + '\n[[questions.completions]]\ncompletion = "print(1)"\n')
    run = _oneshot("runner", "write-results", source, tmp_path / "out.csv")
    assert run.returncode == 2
    assert run.stderr.strip() == (
        f"oneshot: error: {source}: questions[1].completions[0].results: missing: run `oneshot runner run-tests` first"
    )


@pytest.mark.docker
def test_completions_run_in_the_docker_sandbox_alike(tmp_path: Path, engine: object) -> None:
    given = "".join(
        f'\n[[questions.completions]]\ncompletion = """{text}"""\n' for text in ("print(input().upper())", "print(1)")
    )
    source = tmp_path / "q.toml"
    source.write_text(QUESTIONS + given)  # the completions of the last question, "shout"
    for sandbox in ("local", "docker"):
        run = _oneshot("runner", "run-tests", source, tmp_path / f"{sandbox}.toml", "--sandbox", sandbox)
        assert run.returncode == 0, run.stderr
    local, docker = (tomllib.loads((tmp_path / f"{name}.toml").read_text()) for name in ("local", "docker"))
    assert docker == local
    assert [c["results"] for c in docker["questions"][1]["completions"]] == [[True], [False]]
