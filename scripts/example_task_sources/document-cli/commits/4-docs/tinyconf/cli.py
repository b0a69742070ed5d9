"""The ``tinyconf`` command: get, set, list and dump keys of a config file."""

from __future__ import annotations

import argparse
import sys

from tinyconf.core import TYPES, ConfigError, dump, get, load, set_value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``tinyconf`` command, one subcommand per action."""
    parser = argparse.ArgumentParser(prog="tinyconf", description="Read and write small key = value config files.")
    commands = parser.add_subparsers(dest="command", required=True)

    get_cmd = commands.add_parser("get", help="print one value")
    get_cmd.add_argument("file", help="config file to read")
    get_cmd.add_argument("key", help="dotted key, e.g. db.port")
    get_cmd.add_argument("--default", help="print this when the key is missing, instead of failing")
    get_cmd.add_argument(
        "--type", choices=TYPES, default="str", dest="as_type", help="convert the value first (default: str)"
    )

    set_cmd = commands.add_parser("set", help="set one value and rewrite the file")
    set_cmd.add_argument("file", help="config file to update")
    set_cmd.add_argument("key", help="dotted key, e.g. db.port")
    set_cmd.add_argument("value", help="new value (stored as a string)")
    set_cmd.add_argument("--create", action="store_true", help="create the file if it does not exist")

    keys_cmd = commands.add_parser("keys", help="list the keys, sorted")
    keys_cmd.add_argument("file", help="config file to read")
    keys_cmd.add_argument("--prefix", default="", help="only keys starting with this, e.g. db.")

    dump_cmd = commands.add_parser("dump", help="print the whole file, normalised")
    dump_cmd.add_argument("file", help="config file to read")
    dump_cmd.add_argument("--format", choices=("ini", "json"), default="ini", help="output format (default: ini)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    0 on success, 1 when ``get`` finds no such key and has no ``--default``, 2 when the file is
    missing or malformed or a value does not convert.
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "set":
            set_value(args.file, args.key, args.value, create=args.create)
            return 0
        config = load(args.file)
        if args.command == "get":
            if args.key not in config and args.default is None:
                print(f"tinyconf: no key {args.key!r} in {args.file}", file=sys.stderr)
                return 1
            value = get(config, args.key, default=args.default, as_type=args.as_type)
            print(str(value).lower() if isinstance(value, bool) else value)
        elif args.command == "keys":
            for key in sorted(config):
                if key.startswith(args.prefix):
                    print(key)
        else:
            sys.stdout.write(dump(config, format=args.format))
    except (ConfigError, OSError, ValueError) as exc:
        print(f"tinyconf: {exc}", file=sys.stderr)
        return 2
    return 0
