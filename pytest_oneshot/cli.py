"""The ``oneshot`` console script: housekeeping commands around the pytest plugin.

Each command group lives next to the code it drives and contributes an
``add_commands(subparsers)`` function; this module only lists them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pytest_oneshot.errors import OneshotError

# group name -> module whose add_commands(subparsers) adds it; imported only when used
COMMAND_GROUPS: dict[str, str] = {
    "docker": "pytest_oneshot.sandbox.dockerd",
    "proxy": "proxy.proxy_cli",
    "traces": "proxy.traces_cli",
}


def build_parser(groups: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oneshot", description="pytest-oneshot: agent evaluation tasks as tests")
    subparsers = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    for module in dict.fromkeys(COMMAND_GROUPS[name] for name in groups or COMMAND_GROUPS):
        importlib.import_module(module).add_commands(subparsers)  # a module may add several groups
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wanted = [argv[0]] if argv and argv[0] in COMMAND_GROUPS else None
    args = build_parser(wanted).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OneshotError as exc:
        print(f"oneshot: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
