"""Harbor (and Terminal-Bench) task directories, both ways: run theirs here, publish ours there.

A Harbor task is ``instruction.md``, ``task.toml``, ``environment/Dockerfile`` (and its build context),
``solution/solve.sh`` and ``tests/test.sh``, which writes a reward to ``/logs/verifier/reward.txt``
(or ``reward.json``). Harbor starts the image, lets the agent work where the Dockerfile's ``WORKDIR``
says, copies ``tests/`` to ``/tests`` and runs ``/tests/test.sh`` there.

:func:`import_task` turns one into a task of ours that does the same on the harness's honesty path:
the repo is an empty start commit, and the image's ``WORKDIR`` becomes the workspace (its files move
into it and the ``WORKDIR`` path links there), so the agent's change is what it did to those files;
``tests/`` are hidden files at ``.harbor/tests/`` (test infrastructure, ``/tests`` links there) and
the reward mode reads ``/logs/verifier/reward.txt`` from the scoring sandbox's fresh verifier dir;
``solution/`` stays ``solution/``, which the ``oracle`` agent runs. pytest collects a Harbor directory
through the same import, into the cache. :func:`export_task` writes a task of ours as a Harbor task.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

from pytest_oneshot.errors import TaskFormatError
from pytest_oneshot.repo import git
from pytest_oneshot.scoring.tests import graded_tests, selection
from pytest_oneshot.task import META_FILE, Task, load_task
from pytest_oneshot.task_tests import REPORT_DIR, parse_tests_command

TASK_TOML = "task.toml"
INSTRUCTION = "instruction.md"
DOCKERFILE = "environment/Dockerfile"
COMPOSE = "environment/docker-compose.yaml"
"""Harbor's docker backend merges it over its own compose file (its ``main`` service is the task's container)."""
TESTS_AT = ".harbor/tests"
"""Where Harbor's ``tests/`` go in the workspace (hidden files; ``/tests`` links there)."""
_FIXED_DATES = {"GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}
_WORKDIR = re.compile(r"^\s*WORKDIR\s+(.+?)\s*$", re.I | re.M)
_SYSTEM_DIRS = {"/", "/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/root", "/sbin", "/sys", "/tmp", "/usr", "/var"}


def is_harbor_task(path: Path) -> bool:
    return (path / TASK_TOML).is_file() and (path / INSTRUCTION).is_file() and not (path / META_FILE).exists()


def dockerfile_workdir(text: str, where: str) -> str:
    """The last ``WORKDIR`` of a Dockerfile (relative ones joined), where the agent and the tests work.

    Raises:
        TaskFormatError: none, or a system directory (it cannot become the workspace).
    """
    workdir = PurePosixPath("/")
    for match in _WORKDIR.finditer(text):
        value = match.group(1)
        value = json.loads(value)[0] if value.startswith("[") else value.strip("\"'")
        workdir = workdir / value
    if str(workdir) in _SYSTEM_DIRS or ".." in workdir.parts or "$" in str(workdir):
        raise TaskFormatError(where, "WORKDIR", f"must name the task's own directory, e.g. /app (got {str(workdir)!r})")
    return str(workdir)


def _read_config(src: Path) -> dict[str, Any]:
    try:
        return tomllib.loads((src / TASK_TOML).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TaskFormatError(str(src / TASK_TOML), None, f"not valid TOML: {exc}") from None


def _number(config: dict[str, Any], section: str, key: str, default: float) -> float:
    value = config.get(section, {}).get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise TaskFormatError(TASK_TOML, f"{section}.{key}", f"must be a number > 0 (got {value!r})")
    return float(value)


def _empty_repo(bundle: Path) -> str:
    """A bundle of one empty commit (fixed dates: the same sha, and docker image, every time)."""
    with tempfile.TemporaryDirectory(prefix="oneshot-harbor-") as scratch:
        git("init", "-q", "-b", "main", scratch)
        git("commit", "-q", "--allow-empty", "-m", "start", cwd=Path(scratch), env=_FIXED_DATES)
        git("bundle", "create", "-q", str(bundle), "main", cwd=Path(scratch))
        return git("rev-parse", "HEAD", cwd=Path(scratch)).strip()


def _move_workdir(workdir: str) -> list[str]:
    """Image build steps: the WORKDIR's files join the workspace, whose path the WORKDIR becomes; /tests
    and /logs are where Harbor's scripts look."""
    quoted = shlex.quote(workdir)
    return [
        f"tar -C {quoted} --exclude=./.git -cf - . | tar -C /workspace -xf - && rm -rf {quoted} "
        f'&& mkdir -p "$(dirname {quoted})" && ln -s /workspace {quoted}',
        f"rm -rf /tests && ln -s /workspace/{TESTS_AT} /tests",
    ]


def import_task(src: Path, dest: Path) -> Path:
    """Write the Harbor task ``src`` as a task of ours at ``dest`` (which must not exist).

    Raises:
        TaskFormatError: a file Harbor requires is missing or malformed (naming it and the field).
    """
    for required in (INSTRUCTION, DOCKERFILE, "tests/test.sh"):
        if not (src / required).is_file():
            raise TaskFormatError(str(src / required), None, "file not found (a Harbor task needs it)")
    config = _read_config(src)
    dockerfile = (src / DOCKERFILE).read_text(encoding="utf-8")
    workdir = dockerfile_workdir(dockerfile, str(src / DOCKERFILE))
    test_sh = (src / "tests/test.sh").read_text(encoding="utf-8", errors="replace")
    report = "reward.json" if "reward.json" in test_sh and "reward.txt" not in test_sh else "reward.txt"
    dest.mkdir(parents=True)
    for part in ("environment", "solution"):
        if (src / part).is_dir():
            shutil.copytree(src / part, dest / part)
    shutil.copytree(src / "tests", dest / "hidden" / TESTS_AT)
    metadata = config.get("metadata", {})
    tags = metadata.get("tags", [])
    meta = {
        "task_id": src.name,
        "metadata": {
            "title": src.name,
            "tags": [tag for tag in tags if isinstance(tag, str) and re.fullmatch(r"[A-Za-z_][\w-]*", tag)],
            "summary": f"imported from the Harbor task {src.name}",
        },
        "repo": {"bundle": "repo.bundle", "branch": "main", "start_commit_sha": _empty_repo(dest / "repo.bundle")},
        "lm": {"instructions": (src / INSTRUCTION).read_text(encoding="utf-8")},
        "evaluation": {"rubrics": [{"id": "correctness", "criterion": "the reward of the task's tests/test.sh"}]},
        "tests": {
            "mode": "reward",
            "command": "bash /tests/test.sh",
            "report": f"{REPORT_DIR}/{report}",
            "rubric_id": "correctness",
            "infrastructure": [".harbor"],
        },
        "environment": {
            "dockerfile": DOCKERFILE,
            "setup": _move_workdir(workdir),
            "cpus": _number(config, "environment", "cpus", 1),
            "memory_mb": int(_number(config, "environment", "memory_mb", 2048)),
        },
        "limits": {
            "agent_timeout_sec": _number(config, "agent", "timeout_sec", 600),
            "tests_timeout_sec": _number(config, "verifier", "timeout_sec", 600),
        },
    }
    (dest / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return dest


def collected_task(src: Path, cache_dir: Path) -> Task:
    """The task pytest runs for the Harbor directory ``src``: imported once per content into the cache."""
    digest = hashlib.sha256()
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        digest.update(path.relative_to(src).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    root = cache_dir / "harbor"
    dest = root / digest.hexdigest()[:24] / src.name
    if not (dest / META_FILE).is_file():
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=root))
        try:
            import_task(src, staging / src.name)
            dest.parent.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):  # another xdist worker published it first
                (staging / src.name).rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return load_task(dest)


def _toml_value(value: object) -> str:
    """A TOML value for strings, numbers and lists of strings (JSON's escapes are TOML's)."""
    return json.dumps(value)


def _harbor_dockerfile(task: Task, base_image: str, workdir: str) -> str:
    """FROM the task's environment, the repo at the start commit in /app as a git repo, the setup."""
    env = task.spec.environment
    head = (task.paths.root / env.dockerfile).read_text() if env.dockerfile else f"FROM {base_image}\n"
    lines = [head.rstrip("\n"), "# --- written by `oneshot harbor export` ---"]
    if env.system_packages:
        lines.append(
            f"RUN apt-get update && apt-get install -y --no-install-recommends {shlex.join(env.system_packages)}"
        )
    lines += [
        "COPY repo /app",
        "WORKDIR /app",
        "RUN git init -q && git add -A && git -c user.name=oneshot -c user.email=oneshot@localhost commit -qm start",
    ]
    if env.pip:
        lines.append(
            f"RUN python3 -m venv /opt/oneshot/venv && /opt/oneshot/venv/bin/pip install {shlex.join(env.pip)}"
        )
        lines.append('ENV PATH="/opt/oneshot/venv/bin:$PATH"')
    lines += [f"RUN {json.dumps(['bash', '-c', command])}" for command in env.setup]
    lines.append(f"WORKDIR {workdir}")
    return "\n".join(lines) + "\n"


def _test_sh(task: Task, workdir: str) -> str:
    """``tests/test.sh``: the hidden files over the workdir, the task's test command, a reward of 1 or 0
    (the reward mode's own reward, as written)."""
    tests = task.spec.tests
    lines = [
        "#!/bin/bash",
        "# Written by `oneshot harbor export`: hidden files in, the task's tests, the reward out.",
        f"mkdir -p {REPORT_DIR}",
        f"cd {shlex.quote(workdir)}",
        "cp -r /tests/hidden/. .",
    ]
    if tests.mode == "pytest":
        parsed = parse_tests_command(tests.command)
        env = " ".join(f"{name}={shlex.quote(value)}" for name, value in parsed.env.items())
        argv = [
            parsed.python,
            "-m",
            "pytest",
            *parsed.args,
            "-p",
            "no:cacheprovider",
            *selection(graded_tests(task.spec)),
        ]
        lines.append(f"{env + ' ' if env else ''}{shlex.join(argv)}")
    else:
        verifier = REPORT_DIR if tests.mode == "reward" else "$(mktemp -d)"
        lines += [f"export ONESHOT_VERIFIER_DIR={verifier}", tests.command]
    lines.append("status=$?")
    report = tests.report_file or ""
    if tests.mode == "reward" and PurePosixPath(report).name != "reward.txt":
        lines.append(f'cp "$ONESHOT_VERIFIER_DIR/{report}" {REPORT_DIR}/reward.txt 2>/dev/null || true')
    if tests.mode != "reward":
        lines.append(f"if [ $status -eq 0 ]; then echo 1; else echo 0; fi > {REPORT_DIR}/reward.txt")
    return "\n".join(lines) + "\n"


def _compose(task: Task) -> str:
    """``environment/docker-compose.yaml`` of a task without network: Harbor's ``main`` service gets
    ``network_mode: none`` (Harbor respects a task's own networking), and its image builds with no
    network too unless the build needs one (the task's own Dockerfile, ``pip``, ``system_packages``)."""
    env = task.spec.environment
    lines = [
        "# Written by `oneshot harbor export`: the task's container has no network.",
        "services:",
        "  main:",
        "    network_mode: none",
    ]
    if not (env.dockerfile or env.pip or env.system_packages):
        lines += ["    build:", "      network: none"]
    return "\n".join(lines) + "\n"


def export_task(task: Task, dest: Path, base_image: str, *, offline_docker: bool = False) -> Path:
    """Write ``task`` as a Harbor task directory at ``dest`` (which must not exist).

    A task without network says so twice: ``allow_internet = false`` in ``task.toml`` (every Harbor
    backend enforces it or rejects the task) and ``network_mode: none`` in ``environment/docker-compose.yaml``
    (Harbor's docker backend). ``offline_docker`` drops the first: Harbor's docker backend enforces
    ``allow_internet = false`` with an egress-control sidecar whose images it pulls from Docker Hub,
    which a host without a registry cannot do; the compose file alone keeps the container offline
    there, and a backend that ignores it would give the task a network.

    Raises:
        TaskFormatError: the task has no reference diff for ``solution/solve.sh``.
    """
    try:
        patch = task.reference_patch().decode("utf-8")
    except (FileNotFoundError, UnicodeDecodeError) as exc:
        raise TaskFormatError(str(task.paths.reference_diff), None, f"cannot become solution/solve.sh: {exc}") from None
    from pytest_oneshot.repo import snapshot  # the start commit's files

    workdir = str(PurePosixPath("/app", task.spec.repo.subdir))
    repo = snapshot(task)
    (dest / "environment").mkdir(parents=True)
    _checkout(repo, dest / "environment" / "repo")
    for name, data in task.docker_context().items():
        (dest / "environment" / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / "environment" / name).write_bytes(data)
    (dest / DOCKERFILE).write_text(_harbor_dockerfile(task, base_image, workdir))
    offline = task.spec.environment.network == "none"
    if offline:
        (dest / COMPOSE).write_text(_compose(task))
    (dest / INSTRUCTION).write_text(task.instructions)
    marker = "ONESHOT_PATCH_EOF"
    (dest / "solution").mkdir()
    (dest / "solution" / "solve.sh").write_text(
        f"#!/bin/bash\nset -e\ncd /app\ngit apply --whitespace=nowarn <<'{marker}'\n{patch}{marker}\n"
    )
    (dest / "tests" / "hidden").mkdir(parents=True)
    for path, data in task.hidden_files().items():
        (dest / "tests" / "hidden" / path).parent.mkdir(parents=True, exist_ok=True)
        (dest / "tests" / "hidden" / path).write_bytes(data)
    (dest / "tests" / "test.sh").write_text(_test_sh(task, workdir))
    spec = task.spec
    toml = [
        'version = "1.0"',
        "",
        "[metadata]",
        f"author_name = {_toml_value('pytest-oneshot export of ' + spec.task_id)}",
        'difficulty = "unknown"',
        'category = "software-engineering"',
        f"tags = {_toml_value(spec.metadata.tags)}",
        "",
        "[verifier]",
        f"timeout_sec = {spec.limits.tests_timeout_sec}",
        "",
        "[agent]",
        f"timeout_sec = {spec.limits.agent_timeout_sec}",
        "",
        "[environment]",
        f"cpus = {max(1, round(spec.environment.cpus))}",
        f"memory_mb = {spec.environment.memory_mb}",
    ]
    if offline and offline_docker:
        toml.append(f"# no network all the same: network_mode: none in {COMPOSE} (exported with --offline-docker)")
    toml.append(f"allow_internet = {'false' if offline and not offline_docker else 'true'}")
    (dest / TASK_TOML).write_text("\n".join(toml) + "\n")
    return dest


def _checkout(repo: Path, dest: Path) -> None:
    """The start commit's files (no .git) at ``dest``."""
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=repo, capture_output=True, check=True)
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")


def _import(args: argparse.Namespace) -> int:
    import_task(args.src, args.dest)
    print(f"imported {args.src} -> {args.dest} (run: pytest {args.dest} --oneshot-sandbox=docker)")
    return 0


def _export(args: argparse.Namespace) -> int:
    export_task(load_task(args.task), args.dest, args.base_image, offline_docker=args.offline_docker)
    print(f"exported {args.task} -> {args.dest} (run: harbor run -p {args.dest} -a oracle)")
    return 0


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from pytest_oneshot.sandbox.dockerd import BASE_IMAGE

    parser = subparsers.add_parser("harbor", help="convert tasks to and from Harbor's format")
    commands = parser.add_subparsers(dest="harbor_command", required=True, metavar="COMMAND")
    imports = commands.add_parser("import", help="a Harbor task directory -> a task of ours")
    imports.add_argument("src", type=Path, metavar="HARBOR_TASK")
    imports.add_argument("dest", type=Path, metavar="DEST", help="new task directory")
    imports.set_defaults(func=_import)
    exports = commands.add_parser("export", help="a task of ours -> a Harbor task directory")
    exports.add_argument("task", type=Path, metavar="TASK")
    exports.add_argument("dest", type=Path, metavar="DEST", help="new Harbor task directory")
    exports.add_argument("--base-image", default=BASE_IMAGE, metavar="IMAGE",
                         help=f"FROM image for tasks without a Dockerfile (default: {BASE_IMAGE})")  # fmt: skip
    exports.add_argument(
        "--offline-docker",
        action="store_true",
        help="keep the network off with environment/docker-compose.yaml only, not task.toml's allow_internet: "
        "Harbor's docker backend then needs no egress-control sidecar (whose images it pulls), so the task runs "
        "where no registry is reachable; backends that ignore the compose file give the task a network",
    )
    exports.set_defaults(func=_export)
