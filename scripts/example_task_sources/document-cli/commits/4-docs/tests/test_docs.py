"""The README documents the real command line, and the code documents itself."""

import argparse
import inspect
import re
from pathlib import Path

import pytest

import tinyconf
import tinyconf.cli
import tinyconf.core

README = Path(__file__).resolve().parents[1] / "README.md"


def _cli_section() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^##[ \t]+Command-line usage[ \t]*$(.*?)(?=^#{1,2}[ \t]|\Z)", text, re.M | re.S | re.I)
    assert match, "README.md has no '## Command-line usage' section"
    return match.group(1)


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = tinyconf.cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_readme_has_cli_section():
    assert _cli_section().strip()


def test_cli_section_covers_every_subcommand():
    section = _cli_section()
    for name in _subcommands():
        assert re.search(rf"tinyconf {name}\b", section), f"subcommand {name!r} is not documented"


def test_cli_section_mentions_every_option_and_choice():
    section = _cli_section()
    for name, sub in _subcommands().items():
        for action in _options(sub):
            for flag in action.option_strings:
                assert flag in section, f"option {flag} of {name!r} is not documented"
            for choice in action.choices or ():
                assert re.search(rf"\b{choice}\b", section), f"choice {choice!r} of {name} {action.option_strings[0]} is not documented"


def test_cli_section_documents_no_unknown_options():
    real = {flag for sub in _subcommands().values() for a in sub._actions for flag in a.option_strings}
    for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", _cli_section()):
        assert flag in real, f"README documents {flag}, which the CLI does not have"


def test_cli_section_has_an_example():
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", _cli_section(), re.M | re.S)
    assert any(re.search(r"^\s*(\$ )?tinyconf \w+", block, re.M) for block in blocks)


def test_every_parser_argument_has_help():
    parser = tinyconf.cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for choice in action._choices_actions:
        assert choice.help, f"subcommand {choice.dest!r} has no help"
    for name, sub in action.choices.items():
        for arg in sub._actions:
            assert arg.help, f"{name} {arg.option_strings or arg.dest} has no help"


def test_modules_have_docstrings():
    for module in (tinyconf, tinyconf.core, tinyconf.cli):
        assert (module.__doc__ or "").strip(), f"{module.__name__} has no module docstring"


@pytest.mark.parametrize("module", [tinyconf.core, tinyconf.cli], ids=["core", "cli"])
def test_public_functions_document_their_parameters(module):
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        doc = inspect.getdoc(obj) or ""
        assert doc.strip(), f"{module.__name__}.{name} has no docstring"
        if inspect.isfunction(obj):
            for param in inspect.signature(obj).parameters:
                assert re.search(rf"\b{param}\b", doc), f"{module.__name__}.{name}: parameter {param!r} is not described"
