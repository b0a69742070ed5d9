"""``oneshot hf export|push|pull``: tasks to and from Hugging Face datasets."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from oneshot_shared.paths import cache_dir


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hf = subparsers.add_parser("hf", help="Share tasks as Hugging Face datasets")
    commands = hf.add_subparsers(dest="command", required=True, metavar="COMMAND")

    export = commands.add_parser("export", help="Write tasks as dataset rows plus the tasks/<slug>/ layout")
    export.add_argument("tasks", nargs="+", type=Path, help="task dirs, or dirs of task dirs")
    export.add_argument("--out", type=Path, required=True, help="a directory, or FILE.jsonl for rows only")
    export.set_defaults(func=_export)

    push = commands.add_parser("push", help="Export tasks and commit them to a dataset (safety checks first)")
    push.add_argument("repo_id", help="OWNER/NAME of the dataset (created if missing)")
    push.add_argument("tasks", nargs="+", type=Path, help="task dirs, or dirs of task dirs")
    push.add_argument("--private", action="store_true", help="create the dataset private")
    push.add_argument("--force", action="store_true", help="push tasks marked sensitive to a public dataset")
    push.add_argument("--message", help="commit message")
    push.set_defaults(func=_push)

    pull = commands.add_parser("pull", help="Download a dataset's tasks as task dirs")
    pull.add_argument("repo_id", help="OWNER/NAME[@REVISION]")
    pull.add_argument("--task", help="only this task (its slug)")
    pull.add_argument("--revision", help="branch, tag or commit (default: main)")
    pull.add_argument("--out", type=Path, default=Path("tasks"), help="where the task dirs go (default: tasks)")
    pull.add_argument("--force", action="store_true", help="replace task dirs already there")
    pull.set_defaults(func=_pull)


def _export(args: argparse.Namespace) -> int:
    from pytest_oneshot.hf.export import export_tasks

    rows = export_tasks(args.tasks, args.out)
    print(f"exported {len(rows)} task(s) to {args.out}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from pytest_oneshot.hf.hub import push

    url = push(args.tasks, args.repo_id, private=args.private, force=args.force, message=args.message)
    print(f"pushed to {args.repo_id}: {url}")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from pytest_oneshot.hf.hub import pull

    spec = f"{args.repo_id}@{args.revision}" if args.revision else args.repo_id
    pulled = pull(spec, cache_dir(os.environ), args.out, task=args.task, force=args.force)
    print(f"pulled {len(pulled['tasks'])} task(s) from {pulled['repo_id']}@{pulled['sha']} into {args.out}")
    return 0
