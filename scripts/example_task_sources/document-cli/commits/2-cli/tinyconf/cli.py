from __future__ import annotations

import argparse
import sys

from tinyconf.core import TYPES, ConfigError, dump, get, load


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyconf", description="Read small key = value config files.")
    commands = parser.add_subparsers(dest="command", required=True)

    get_cmd = commands.add_parser("get", help="print one value")
    get_cmd.add_argument("file")
    get_cmd.add_argument("key", help="dotted key, e.g. db.port")
    get_cmd.add_argument("--default")
    get_cmd.add_argument("--type", choices=TYPES, default="str", dest="as_type")

    keys_cmd = commands.add_parser("keys")
    keys_cmd.add_argument("file")
    keys_cmd.add_argument("--prefix", default="")

    dump_cmd = commands.add_parser("dump")
    dump_cmd.add_argument("file")
    dump_cmd.add_argument("--format", choices=("ini", "json"), default="ini", help="output format (default: ini)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
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
