"""Command line: ``python -m textstats [FILE] [--top N]``."""

from __future__ import annotations

import argparse
import sys

from textstats.core import top_words, word_count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textstats", description="Word statistics for a text file.")
    parser.add_argument("file", nargs="?", default="-", help="text file to read ('-' or nothing: stdin)")
    parser.add_argument("--top", type=int, default=10, metavar="N", help="how many frequent words to list (default: 10)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.file == "-":
        text = sys.stdin.read()
    else:
        with open(args.file, encoding="utf-8") as handle:
            text = handle.read()
    print(f"words: {word_count(text)}")
    for word, count in top_words(text, args.top):
        print(f"{count:>6}  {word}")
    return 0
