"""``oneshot runner generate|run-tests|write-results``: the Codex Runner's three steps as commands.

Each step reads a question file and writes the next one (or the CSV), as the original tool did,
so a human can look at and clean the completions between the steps. ``generate`` appends
completions to those a question already has; ``run-tests`` (re)writes every completion's results.
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path

from oneshot_shared.paths import cache_dir
from pytest_oneshot.runner.completions import API_SHAPES, GenerationSettings, generate_completions
from pytest_oneshot.runner.execute import run_questions
from pytest_oneshot.runner.questions import Completion, Question, load_questions, write_questions
from pytest_oneshot.runner.summary import check_results, summarize, write_csv
from pytest_oneshot.sandbox import default_sandbox_registry

__all__ = ["add_commands"]


def _generate(args: argparse.Namespace) -> int:
    questions = load_questions(args.input)
    settings = GenerationSettings(
        model=args.model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        api=args.api,
        n=args.n,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
    )
    for question, texts in zip(questions, generate_completions(questions, settings), strict=True):
        question.completions += [Completion(completion=text) for text in texts]
    write_questions(args.output, questions)
    print(f"{sum(len(q.completions) for q in questions)} completions for {len(questions)} questions -> {args.output}")
    return 0


def _run_tests(args: argparse.Namespace) -> int:
    questions = load_questions(args.input)
    factory = default_sandbox_registry().get(args.sandbox)

    def progress(question: Question) -> None:
        print(f"{question.id}: {len(question.completions)} completions x {len(question.testcases)} testcases")

    options = {"docker_image": args.docker_image, "cache_dir": str(cache_dir())}
    run_id = f"runner-{secrets.token_hex(4)}"  # sandbox names of concurrent runs must differ
    run_questions(questions, factory, cache_dir=cache_dir(), run_id=run_id, options=options, progress=progress)
    write_questions(args.output, questions)
    print(f"results -> {args.output}")
    return 0


def _write_results(args: argparse.Namespace) -> int:
    questions = load_questions(args.input)
    check_results(questions, args.input)
    write_csv(args.csv, questions)
    for question in questions:
        summary = summarize(question)
        pass_at = " ".join(f"pass@{k}={value:.3f}" for k, value in summary.pass_at.items())
        print(f"{summary.id}: {summary.passing}/{summary.completions} passing {pass_at}".rstrip())
    print(f"csv -> {args.csv}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runner = subparsers.add_parser("runner", help="Codex Runner: completions graded by stdin/stdout testcases")
    steps = runner.add_subparsers(dest="step", required=True, metavar="STEP")

    generate = steps.add_parser("generate", help="Generate completions for every question")
    generate.add_argument("input", type=Path, metavar="IN", help="Question TOML file")
    generate.add_argument("output", type=Path, metavar="OUT", help="TOML file written with the completions")
    generate.add_argument("--model", required=True, help="Model writing the completions")
    generate.add_argument("--base-url", default="", help="OpenAI-compatible base URL (default: the OpenAI API)")
    generate.add_argument("--api-key-env", default="OPENAI_API_KEY", help="Variable holding the API key")
    generate.add_argument("--api", choices=API_SHAPES, default="chat", help="Request shape (default: chat)")
    generate.add_argument("--n", type=int, default=1, help="Completions per question (default: 1)")
    generate.add_argument("--max-tokens", type=int, default=16, help="Max tokens per completion (default: 16)")
    generate.add_argument("--temperature", type=float, default=0.9, help="Sampling temperature (default: 0.9)")
    generate.set_defaults(func=_generate)

    run_tests = steps.add_parser("run-tests", help="Run every completion against its question's testcases")
    run_tests.add_argument("input", type=Path, metavar="IN", help="TOML file with completions")
    run_tests.add_argument("output", type=Path, metavar="OUT", help="TOML file written with the results")
    run_tests.add_argument("--sandbox", default="local", help="Sandbox the programs run in (default: local)")
    run_tests.add_argument("--docker-image", default="", help="Base image for --sandbox docker")
    run_tests.set_defaults(func=_run_tests)

    results = steps.add_parser("write-results", help="Write pass ratios, pass@k and aggregates as CSV")
    results.add_argument("input", type=Path, metavar="IN", help="TOML file with results")
    results.add_argument("csv", type=Path, metavar="CSV", help="CSV file to write")
    results.set_defaults(func=_write_results)
