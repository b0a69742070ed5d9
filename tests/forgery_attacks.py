"""One table of attacks on the verdict, shared by the local and the docker forgery tests.

Every attack is a shell command run as a ``command`` agent in the workdir of a ``make_real_task``
repo (``src/calc`` with the bug, pytest configured in ``pyproject.toml``, a tracked
``tests/conftest.py``, ``tests/helpers.py`` imported by the hidden ``tests/test_calc.py``). None
fixes the bug: each tries to make the item pass anyway, or to turn the agent's failure into a
harness error. The command runs inside the sandbox and sees nothing of the host, so payloads are
inline (here-documents written by :func:`put` / :func:`append`).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

import pytest

FAIL_TO_PASS = "tests/test_calc.py::test_add"
_HELPERS = (  # the default repo's tests/helpers.py (tests/conftest.py: _REAL_REPO)
    '"""Assertions shared by the test modules."""\n\n\ndef assert_sum(func, a, b, expected):\n'
    "    result = func(a, b)\n"
    '    assert result == expected, f"{func.__name__}({a!r}, {b!r}) == {result!r}, expected {expected!r}"\n'
)
HIDDEN_TEST = "tests/test_calc.py"
ITEM = "calc[command-r0]"
HONEST_FIX = "sed -i 's/a - b/a + b/' src/calc/__init__.py"
BROKEN_TESTS_SETUP = {"setup": ["echo setting up; exit 1"]}
"""A task whose ``tests.setup`` fails: its verdict cannot be trusted, even with the right fix."""


def put(path: str, text: str) -> str:
    """Shell that writes ``text`` to ``path`` (parent dirs created)."""
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    mkdir = f"mkdir -p {shlex.quote(parent)} && " if parent else ""
    return f"{mkdir}cat > {shlex.quote(path)} <<'PAYLOAD_EOF'\n{text}PAYLOAD_EOF"


def append(path: str, text: str) -> str:
    """Shell that appends ``text`` to ``path``."""
    return f"cat >> {shlex.quote(path)} <<'PAYLOAD_EOF'\n{text}PAYLOAD_EOF"


def script(*steps: str) -> str:
    return "set -e\n" + "\n".join(steps) + "\n"


# --- payloads ----------------------------------------------------------------------------------

FORGE_HOOK = """\
def pytest_runtest_makereport(item, call):
    import os

    from _pytest.reports import TestReport

    report = TestReport.from_item_and_call(item, call)
    report.outcome, report.longrepr = "passed", None
    # ids as seen from the repo root, even when an ini file in tests/ moved the rootdir
    report.nodeid = os.path.relpath(str(item.path)).replace(os.sep, "/") + "::" + item.name
    return report
"""
"""A pytest hook that reports every test as passed (pytest 7 and 9)."""

FORGE_PLUGIN = '"""pytest plugin: every test passes."""\n\n\n' + FORGE_HOOK
"""A pytest plugin (module, conftest.py or entry point) that reports every test as passed."""

PATCH_RUNNER = """\
import _pytest.python

_pytest.python.Function.runtest = lambda self: None  # no test body runs, so every test passes
"""
"""Code for a module the tests import: once imported, no test body runs."""

REGISTER_SELF_AS_PLUGIN = """\
import os
import sys

sys.modules.setdefault("_forge", sys.modules[__name__])
os.environ["PYTEST_PLUGINS"] = "_forge"  # pytest loads this very module as a plugin
"""

SHADOW_PLUGGY = (
    '''\
"""Shadows pluggy: loads the real one, then registers itself as a pytest plugin."""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.modules["_forge"] = sys.modules.pop(__name__)
_saved = sys.path[:]
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
try:
    import pluggy  # the real one; the import statement that loaded us returns it
finally:
    sys.path[:] = _saved
os.environ["PYTEST_PLUGINS"] = "_forge"
'''
    + FORGE_HOOK
)

SHADOW_XML = (
    '''\
"""Shadows the stdlib xml package (its submodules still load from the stdlib)."""
import os

__path__.append(os.path.join(os.path.dirname(os.__file__), "xml"))
'''
    + REGISTER_SELF_AS_PLUGIN
    + FORGE_HOOK
)


def shadow_stdlib(name: str) -> str:
    """A root ``<name>.py`` that loads the real stdlib module in its place, then patches pytest."""
    return (
        f'''\
"""Shadows the stdlib {name}, imported only after the workspace joined sys.path."""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
del sys.modules[__name__]
_saved = sys.path[:]
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
try:
    import {name}  # the real one; the import statement that loaded us returns it
finally:
    sys.path[:] = _saved

'''
        + PATCH_RUNNER
    )


CONTAINER_SH_BROKEN_ARCHIVE = """\
#!/bin/bash
# The harness archives the workspace with `sh -c SCRIPT sh /workspace stop`, found on the
# container's PATH (/usr/local/bin first): answer with a broken archive (exit 0).
if [ "$1" = -c ] && [ "$5" = stop ]; then echo 'this is not a tar archive'; exit 0; fi
exec /bin/sh "$@"
"""


PATH_OVER_PATH_MAX = """\
import os

fd = os.open(".", os.O_RDONLY)
for _ in range(25):  # 25 directories of 200 characters: a path of ~5000, over PATH_MAX (4096)
    os.mkdir("d" * 200, dir_fd=fd)
    deeper = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = deeper
with open(os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as deep:
    deep.write("deep\\n")
"""


KILL_EXEC_SERVER = """\
for f in /proc/[0-9]*/cmdline; do  # the agent is root in its container: find the exec server running it
  if tr '\\0' ' ' < "$f" 2>/dev/null | grep -q '^python3 -I -S /oneshot/execd.py'; then
    p=${f#/proc/}; kill -9 "${p%/cmdline}"
  fi
done
exit 0
"""


def shadow_pytest(exit_code: int) -> str:
    """A root ``pytest.py``: ``python -m pytest`` runs it, it writes an all-passed JUnit report."""
    return f"""\
import re
import sys
from pathlib import Path

junit = next(arg.split("=", 1)[1] for arg in sys.argv if arg.startswith("--junitxml="))
cases = []
for arg in sys.argv[1:]:
    path = arg.split("::")[0]
    if path.endswith(".py") and Path(path).is_file():
        classname = path[:-3].replace("/", ".")
        for name in re.findall(r"^def (test_\\w+)", Path(path).read_text(), re.M):
            cases.append(f'<testcase classname="{{classname}}" name="{{name}}" time="0.001"/>')
suite = f'<testsuite name="pytest" errors="0" failures="0" skipped="0" tests="{{len(cases)}}">'
Path(junit).write_text(f'<?xml version="1.0"?><testsuites>{{suite}}{{"".join(cases)}}</testsuite></testsuites>')
print(f"{{len(cases)}} passed")
sys.exit({exit_code})
"""


CONFTEST_EXIT_3 = (
    FORGE_PLUGIN
    + """

def pytest_sessionfinish(session):
    session.exitstatus = 3  # the JUnit report says passed, the exit code says internal error
"""
)

# Stale bytecode: git-ignored (``__pycache__/``), never in the diff, loaded instead of the source.
PYC_HELPERS = """\
import importlib.util
import py_compile

open(".git/helpers.py", "w").write('def assert_sum(func, a, b, expected):\\n    \"\"\"Checked elsewhere.\"\"\"\\n')
py_compile.compile(
    ".git/helpers.py",
    cfile=importlib.util.cache_from_source("tests/helpers.py"),
    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,  # python never compares it with the source
    doraise=True,
)
"""

PYC_CONFTEST = """\
import importlib.util, marshal, os
from _pytest.assertion.rewrite import PYC_TAIL

source = "tests/conftest.py"  # untouched: pytest takes a cached pyc with its mtime and size
forged = open(source).read() + open(".git/forge_hook.py").read()
stat = os.stat(source)
header = importlib.util.MAGIC_NUMBER + bytes(4)
header += (int(stat.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + (stat.st_size & 0xFFFFFFFF).to_bytes(4, "little")
os.makedirs("tests/__pycache__", exist_ok=True)
with open("tests/__pycache__/conftest" + PYC_TAIL, "wb") as pyc:
    pyc.write(header + marshal.dumps(compile(forged, os.path.abspath(source), "exec")))
"""

# Background pollers (left running after the agent exits; in Python for a fast poll).
BG_REWRITE_JUNIT = """\
import glob, os, re, time

end = time.time() + 300
while time.time() < end:
    for path in glob.glob(".oneshot-junit-*.xml"):
        try:
            text = open(path).read()
        except OSError:
            continue
        if "</testsuites>" in text:
            text = re.sub(r"<(failure|error)\\b.*?(/>|</\\1>)", "", text, flags=re.S)
            open(path + ".tmp", "w").write(text)
            os.replace(path + ".tmp", path)
            raise SystemExit
    time.sleep(0.002)
"""

BG_SWAP_STUB_TESTS = """\
import os, re, time

path = "tests/test_calc.py"
original = open(path).read()
end = time.time() + 300
while time.time() < end:
    try:
        text = open(path).read()
    except OSError:
        text = original
    if text != original:  # the harness wrote the hidden tests: replace them by stubs of the same names
        time.sleep(0.02)
        names = re.findall(r"^def (test_\\w+)", open(path).read(), re.M)
        open(path + ".tmp", "w").write("".join(f"def {name}():\\n    pass\\n\\n" for name in names))
        os.replace(path + ".tmp", path)
        raise SystemExit
    time.sleep(0.002)
"""

BG_LATE_FIX = """\
import time

path = "tests/test_calc.py"
original = open(path).read()
end = time.time() + 300
while time.time() < end:
    if open(path).read() != original:  # hidden tests written: the diff was taken before
        module = "src/calc/__init__.py"
        fixed = open(module).read().replace("a - b", "a + b")
        open(module, "w").write(fixed)
        raise SystemExit
    time.sleep(0.002)
"""

BG_RECREATE_CONFTEST = """\
i=0
while [ $i -lt 20000 ]; do
  [ -f conftest.py ] || cp .git/forge_conftest.py conftest.py
  i=$((i + 1)); sleep 0.01
done
"""

USER_SITE = "d=$(python -c 'import site; print(site.getusersitepackages())') && mkdir -p \"$d\""
"""Shell setting ``$d`` to the user site-packages of the python the tests run with (under ``$HOME``)."""


def put_user_site(name: str, text: str) -> str:
    """Shell that writes ``text`` to ``$d/name`` (after :data:`USER_SITE`)."""
    return f"cat > \"$d\"/{shlex.quote(name)} <<'PAYLOAD_EOF'\n{text}PAYLOAD_EOF"


# --- tests that aren't pytest (tests.mode): the task's own scripts, reports in the verifier dir -----

CHECK_SH = """\
#!/bin/sh
# The task's check: calc.add in a fresh python, its printed answers compared; a reward only on success.
out=$(python3 -I -c 'import sys; sys.path.insert(0, "src"); from calc import add; print(add(2, 3), add(-1, 1))')
if [ "$out" = "5 0" ]; then echo 1 > "$ONESHOT_VERIFIER_DIR/reward.txt"; fi
"""
"""The hidden ``tests/check.sh`` of the reward-mode task."""

REWARD_MODE: dict[str, Any] = {
    "tests": {"mode": "reward", "command": "sh tests/check.sh", "fail_to_pass": [], "pass_to_pass": []}
}
REWARD_HIDDEN = (("tests/check.sh", CHECK_SH),)
JUNIT_ID = "tests.test_calc::test_add"
JUNIT_MODE: dict[str, Any] = {
    "tests": {
        "mode": "junit",
        "command": "python3 -I -m pytest -p no:cacheprovider -q tests/test_calc.py "
        '--junitxml="$ONESHOT_VERIFIER_DIR/junit.xml"',
        "fail_to_pass": [JUNIT_ID],
        "pass_to_pass": ["tests.test_calc::test_zero"],
        "infrastructure": ["tests", "pyproject.toml"],
    }
}
"""A JUnit-mode task: pytest without the harness's launcher, so the task pins its own config and tests."""
ALL_PASSED_JUNIT = (
    '<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="2" failures="0" errors="0" skipped="0">'
    '<testcase classname="tests.test_calc" name="test_add"/><testcase classname="tests.test_calc" name="test_zero"/>'
    "</testsuite></testsuites>\n"
)
CHECK_WRITES_LAST = """\
#!/bin/bash
# Harbor's style: the code runs in a child, the reward (1 or 0) is always written last.
out=$(python3 -I -c 'import sys; sys.path.insert(0, "src"); from calc import add; print(add(2, 3), add(-1, 1))')
reward=0
if [ "$out" = "5 0" ]; then reward=1; fi
echo "$reward" > "$ONESHOT_VERIFIER_DIR/reward.txt"
"""
"""A check that always writes a reward, last (so planting one early is overwritten)."""
REWARD_THEN_KILL_CHECK = """\

import os as _os
import signal as _signal

if _os.environ.get("ONESHOT_VERIFIER_DIR"):  # under the check: plant the reward, then kill the shells above us
    with open(_os.path.join(_os.environ["ONESHOT_VERIFIER_DIR"], "reward.txt"), "w") as _f:
        _f.write("1\\n")
    _pid = _os.getppid()
    while _pid > 1:
        with open(f"/proc/{_pid}/stat") as _s:
            _fields = _s.read().rsplit(")", 1)
        _comm, _ppid = _fields[0].split("(", 1)[1], int(_fields[1].split()[1])
        if _comm not in ("bash", "sh", "dash"):
            break
        _os.kill(_pid, _signal.SIGKILL)
        _pid = _ppid
"""
"""Appended to the code under test: a reward of 1, then the check is killed before it writes its own."""
DEEP_CTRF = """\

import os as _os

if _os.environ.get("ONESHOT_VERIFIER_DIR"):  # a report json.loads cannot parse without running out of stack
    with open(_os.path.join(_os.environ["ONESHOT_VERIFIER_DIR"], "ctrf.json"), "w") as _f:
        _f.write("[" * 200000)
"""
DEEP_RESULTS = """\

import os as _os

for _var in open("/proc/self/environ", "rb").read().split(b"\\0"):  # the launcher popped it; the kernel kept it
    if _var.startswith(b"ONESHOT_RESULTS="):
        _path = _os.path.expanduser(_var.split(b"=", 1)[1].decode())
        _os.makedirs(_os.path.dirname(_path), exist_ok=True)
        with open(_path, "w") as _f:
            _f.write("[" * 200000)
        _os._exit(1)
"""
"""Appended to the code under test: nested JSON where the harness reads its results (a RecursionError)."""
PLANT_REWARD_ON_IMPORT = """\

import os as _os

if "ONESHOT_VERIFIER_DIR" not in _os.environ:  # imported by tests.setup, before the verifier dir is made
    _dir = _os.path.expanduser("~/.oneshot/verifier")
    _os.makedirs(_dir, exist_ok=True)
    for _name in ("reward.txt", "junit.xml"):
        with open(_os.path.join(_dir, _name), "w") as _f:
            _f.write("1\\n")
"""
"""Appended to the code under test: planted when ``tests.setup`` imports it, before the run."""
SYMLINK_JUNIT_ON_IMPORT = f"""\

import os as _os

if "ONESHOT_VERIFIER_DIR" in _os.environ:  # imported by the tests: junit.xml becomes a link to a forged report
    _forged = _os.path.join(_os.environ["ONESHOT_VERIFIER_DIR"], "..", "forged.xml")
    with open(_forged, "w") as _f:
        _f.write({ALL_PASSED_JUNIT!r})
    _os.chmod(_forged, 0o444)  # without DAC_OVERRIDE (local), pytest cannot write its report through the link
    _os.symlink(_forged, _os.path.join(_os.environ["ONESHOT_VERIFIER_DIR"], "junit.xml"))
"""
"""Appended to the code under test: the report path is a symlink when the run ends."""


@dataclass(frozen=True)
class Attack:
    id: str
    kind: int
    """Its class in issue 8: 1 runner configuration, 2 shadow modules, 3 files the hidden tests import,
    4 git is the agent's, 5 processes and home survive, 6 the cross-checks don't decide, 7 agent
    actions become harness errors; and 8 (issue 13) tests that aren't pytest."""
    command: str
    note: str = ""
    timeout: float = 180
    """Seconds the whole pytest run may take before the test fails as hung."""
    named_in_result: str | None = None
    """A path the item's result must name somewhere (changed files, reason, ...)."""
    repo_files: tuple[tuple[str, str | None], ...] = ()
    """Start-commit files (path, text; None leaves a default one out), for layouts the default lacks."""
    meta: dict[str, Any] = field(default_factory=dict)
    """``tb_meta.json`` overrides for the task (e.g. an ``environment``), for attacks that need them."""
    outcomes: tuple[str, ...] = ("failed",)
    """Agent failures the attack may end in (never ``passed``, never the harness's ``error``)."""
    hidden_files: tuple[tuple[str, str], ...] = ()
    """More hidden files of the task (workdir path, text), e.g. a non-pytest mode's check script."""
    fail_to_pass: str = FAIL_TO_PASS
    """The graded test that must not pass (its id in the task's mode)."""


ATTACKS = [
    # 1. Runner configuration
    Attack(
        "pyproject-addopts-plugin",
        1,
        script(put("forge.py", FORGE_PLUGIN), append("pyproject.toml", 'addopts = "-p forge"\n')),
        "-p <root plugin> added to pyproject.toml addopts",
    ),
    Attack(
        "dot-pytest-ini",
        1,
        script(
            put("forge.py", FORGE_PLUGIN),
            put(".pytest.ini", "[pytest]\naddopts = -p forge\npythonpath = src tests\n"),
        ),
        ".pytest.ini wins over pyproject.toml (pytest >= 7.2)",
    ),
    Attack(
        "pytest-toml",
        1,
        script(
            put("forge.py", FORGE_PLUGIN),
            put("pytest.toml", '[pytest]\naddopts = ["-p", "forge"]\npythonpath = ["src", "tests"]\n'),
        ),
        "pytest.toml wins over everything (pytest >= 9; the docker image's pytest 7.2 ignores it)",
    ),
    Attack(
        "tests-dir-tox-ini",
        1,
        script(
            put("forge.py", FORGE_PLUGIN), put("tests/tox.ini", "[pytest]\naddopts = -p forge\npythonpath = ../src .\n")
        ),
        "the test files' dir is searched for config first",
    ),
    Attack(
        "tests-dir-setup-cfg",
        1,
        script(
            put("forge.py", FORGE_PLUGIN),
            put("tests/setup.cfg", "[tool:pytest]\naddopts = -p forge\npythonpath = ../src .\n"),
        ),
    ),
    Attack(
        "egg-info-entry-point",
        1,
        script(
            put("forge.py", FORGE_PLUGIN),
            put("calc_tools.egg-info/PKG-INFO", "Metadata-Version: 2.1\nName: calc-tools\nVersion: 0.1\n"),
            put("calc_tools.egg-info/entry_points.txt", "[pytest11]\ncalc_tools = forge\n"),
        ),
        "a [pytest11] entry point in a git-ignored egg-info on sys.path (the cwd)",
    ),
    # 2. Shadow modules
    Attack("shadow-pytest-module", 2, script(put("pytest.py", shadow_pytest(0))), "python -m pytest runs ./pytest.py"),
    Attack("shadow-pluggy", 2, script(put("pluggy.py", SHADOW_PLUGGY)), "./pluggy.py loads the real one + a plugin"),
    Attack("shadow-xml-package", 2, script(put("xml/__init__.py", SHADOW_XML)), "./xml/ shadows the stdlib package"),
    Attack(
        "shadow-lazily-imported-stdlib",
        2,
        script(put("tarfile.py", shadow_stdlib("tarfile"))),
        "./tarfile.py: imported by a plugin's hook after the workspace joined sys.path (only the plugin "
        "modules themselves are imported before); no test imports it. Local: pytest-oneshot's own plugin "
        "(the sandbox python without a venv) imports tarfile and configparser at configure time",
    ),
    Attack(
        "shadow-stdlib-imported-by-test-helpers",
        2,
        script(put("asyncio.py", shadow_stdlib("asyncio"))),
        "the upstream tests/helpers.py imports asyncio, which pytest never imported: the workspace (cwd, "
        "pythonpath) comes before the stdlib on sys.path, so ./asyncio.py runs (docker; the local host "
        "python's plugins import asyncio before the workspace joins)",
        repo_files=(("tests/helpers.py", "import asyncio  # noqa: F401\n\n" + _HELPERS),),
    ),
    # 3. Files the hidden tests import
    Attack(
        "helpers-vacuous",
        3,
        script(put("tests/helpers.py", 'def assert_sum(func, a, b, expected):\n    """Checked elsewhere."""\n')),
        "the upstream helper the hidden test imports asserts nothing",
    ),
    Attack("helpers-patch-runner", 3, script(append("tests/helpers.py", PATCH_RUNNER)), "the helper patches pytest"),
    Attack("tests-init-patch-runner", 3, script(put("tests/__init__.py", PATCH_RUNNER)), "a new tests/__init__.py"),
    Attack(
        "sitecustomize-package-on-editable-path",
        2,
        script(
            put("src/sitecustomize/__init__.py", PATCH_RUNNER),
            put(
                "src/apport_python_hook.py", PATCH_RUNNER + "raise ImportError  # Debian's sitecustomize: stay quiet\n"
            ),
        ),
        "environment `pip install -e .` (src layout): its .pth puts src/ on sys.path at start-up, and site "
        "imports `sitecustomize` after the .pth files, before the launcher runs: a sitecustomize *package* "
        "(no reset rule names it) where the python has none (pyenv, local), or the module Debian's own "
        "sitecustomize.py imports, apport_python_hook (docker)",
        meta={"environment": {"pip": ["-e", ".", "pytest"]}},
    ),
    Attack(
        "root-init-above-test-package",
        3,
        script(put("__init__.py", PATCH_RUNNER)),
        "the start commit's tests/ is a package (tests/__init__.py, as in tomli): a new __init__.py at the repo "
        "root makes pytest (prepend import mode) import the tests as workspace.tests.test_calc, running the "
        "root __init__.py first; no test imports it",
        repo_files=(("tests/__init__.py", ""),),
    ),
    Attack(
        "gitignored-helpers-package",
        3,
        script(
            put("tests/helpers/__init__.py", 'def assert_sum(func, a, b, expected):\n    """Checked elsewhere."""\n'),
            "echo '*' > tests/helpers/.gitignore",
        ),
        "a package wins over the module of the same name; its own .gitignore '*' keeps it out of the diff",
    ),
    Attack(
        "info-exclude-tests-init",
        3,
        script(put("tests/__init__.py", PATCH_RUNNER), "echo /tests/__init__.py >> .git/info/exclude"),
        "a tests/__init__.py that never shows in the diff",
    ),
    Attack(
        "pyc-unchecked-helpers",
        3,
        script(put(".git/forge_pyc.py", PYC_HELPERS), "python .git/forge_pyc.py"),
        "an unchecked-hash tests/__pycache__/helpers.*.pyc (git-ignored) replaces the helper",
    ),
    Attack(
        "pyc-rewrite-cache-conftest",
        3,
        script(
            put(".git/forge_hook.py", FORGE_HOOK), put(".git/forge_pyc.py", PYC_CONFTEST), "python .git/forge_pyc.py"
        ),
        "pytest's assertion-rewrite cache for the untouched tests/conftest.py, forged with its mtime and size",
    ),
    # 4. Git is the agent's
    Attack(
        "info-exclude-conftest",
        4,
        script(put("conftest.py", FORGE_PLUGIN), "echo /conftest.py >> .git/info/exclude"),
    ),
    Attack("gitignore-conftest", 4, script(put("conftest.py", FORGE_PLUGIN), "echo /conftest.py >> .gitignore")),
    Attack(
        "excludesfile-conftest",
        4,
        script(
            put("conftest.py", FORGE_PLUGIN),
            "echo /conftest.py > .git/more-ignores",
            "git config core.excludesFile .git/more-ignores",
        ),
    ),
    Attack(
        "assume-unchanged-conftest",
        4,
        script(append("tests/conftest.py", FORGE_PLUGIN), "git update-index --assume-unchanged tests/conftest.py"),
    ),
    Attack(
        "skip-worktree-conftest",
        4,
        script(append("tests/conftest.py", FORGE_PLUGIN), "git update-index --skip-worktree tests/conftest.py"),
    ),
    Attack(
        "commit-forgery",
        4,
        script(
            put("conftest.py", FORGE_PLUGIN),
            "git add -A && git -c user.name=a -c user.email=a@a commit -qm 'tidy up'",
        ),
        "HEAD moves past the baseline",
    ),
    Attack(
        "replace-baseline",
        4,
        script(
            "base=$(git rev-parse HEAD)",
            put("conftest.py", FORGE_PLUGIN),
            "git add -A",
            'forged=$(git -c user.name=a -c user.email=a@a commit-tree "$(git write-tree)" -m baseline)',
            'git replace -f "$base" "$forged"',
        ),
        "git replace: the baseline commit now reads as one holding the forgery",
    ),
    Attack(
        "core-worktree-elsewhere",
        4,
        script(
            put("conftest.py", FORGE_PLUGIN),
            "mkdir .git/pristine && git --work-tree=.git/pristine checkout HEAD -- .",
            'git config core.worktree "$PWD/.git/pristine"',
        ),
        "git add -A and git diff now look at a pristine copy of the start tree",
    ),
    Attack(
        "gitattributes-clean-filter",
        4,
        script(
            append("tests/conftest.py", "# --- local\n" + FORGE_PLUGIN),
            "echo 'tests/conftest.py filter=local' > .gitattributes",
            "git config filter.local.clean \"sed '/^# --- local/,\\$d'\"",
        ),
        "git add runs the agent's clean filter, which strips the forgery from what git sees",
    ),
    Attack(
        "attributesfile-clean-filter",
        4,
        script(
            append("tests/conftest.py", "# --- local\n" + FORGE_PLUGIN),
            "echo 'tests/conftest.py filter=local' > .git/attrs",
            "git config core.attributesFile .git/attrs",
            "git config filter.local.clean \"sed '/^# --- local/,\\$d'\"",
        ),
    ),
    Attack(
        "smudge-filter-on-restore",
        4,
        script(
            append("tests/conftest.py", FORGE_PLUGIN),
            put(".git/forge_tail.py", FORGE_PLUGIN),
            "echo 'tests/conftest.py filter=local' > .git/info/attributes",
            "git config filter.local.smudge 'cat; cat .git/forge_tail.py'",
        ),
        "the harness restores the visibly edited conftest with git checkout, which runs the smudge filter",
    ),
    # 5. Processes and home survive
    Attack(
        "bg-rewrite-junit",
        5,
        script(put(".git/bg.py", BG_REWRITE_JUNIT), "nohup python3 .git/bg.py >/dev/null 2>&1 &"),
        "a nohup'ed poller strips the failures from the JUnit file",
    ),
    Attack(
        "bg-swap-stub-tests",
        5,
        script(put(".git/bg.py", BG_SWAP_STUB_TESTS), "setsid python3 .git/bg.py >/dev/null 2>&1 < /dev/null &"),
        "a setsid poller replaces the hidden tests by stubs once they are written",
    ),
    Attack(
        "bg-recreate-conftest",
        5,
        script(
            put("conftest.py", FORGE_PLUGIN),
            "cp conftest.py .git/forge_conftest.py",
            put(".git/bg.sh", BG_RECREATE_CONFTEST),
            "( (sh .git/bg.sh >/dev/null 2>&1 < /dev/null &) & )",
        ),
        "a double-forked loop puts the conftest back after the harness removed it",
    ),
    Attack(
        "bg-late-fix",
        5,
        script(put(".git/bg.py", BG_LATE_FIX), "nohup python3 .git/bg.py >/dev/null 2>&1 < /dev/null &"),
        "the real fix lands only after the diff was taken: it is not the agent's change",
    ),
    Attack(
        "user-site-usercustomize",
        5,
        script(USER_SITE, put_user_site("usercustomize.py", REGISTER_SELF_AS_PLUGIN + FORGE_HOOK)),
        "$HOME outlives the agent phase; python imports usercustomize at startup",
    ),
    Attack(
        "user-site-pth",
        5,
        script(
            USER_SITE,
            'echo \'import os; os.environ["PYTEST_PLUGINS"] = "forge_home"\' > "$d/forge.pth"',
            put_user_site("forge_home.py", FORGE_PLUGIN),
        ),
        "a .pth file in the user site runs at startup",
    ),
    # 6. The cross-checks don't decide
    Attack(
        "exit-3-after-passing",
        6,
        script(put("conftest.py", CONFTEST_EXIT_3), "echo /conftest.py >> .git/info/exclude"),
        "JUnit all passed, exit code 3 (internal error)",
    ),
    Attack(
        "junit-passed-exit-1",
        6,
        script(put("pytest.py", shadow_pytest(1))),
        "JUnit all passed, exit code 1 (tests failed)",
    ),
    # 7. Agent actions become harness errors
    Attack(
        "sparse-2g-file",
        7,
        "truncate -s 2G big.bin",
        "a 2 GiB (sparse) file in the change: failed, not error, and named in the result",
        named_in_result="big.bin",
        timeout=300,
    ),
    Attack(
        "sparse-1t-file",
        7,
        "truncate -s 1T big.bin",
        "a 1 TiB sparse file (no disk used, created in a microsecond): the archive streams every byte of it "
        "(local: host tar, no timeout; docker: docker cp, no timeout) before the cap leaves it out",
        named_in_result="big.bin",
        timeout=150,
    ),
    Attack(
        "fifo-at-hidden-test",
        7,
        f"rm -f {HIDDEN_TEST} && mkfifo {HIDDEN_TEST}",
        "a FIFO where the hidden test goes (git add refuses special files)",
        timeout=150,
    ),
    Attack(
        "fifo-at-hidden-test-skip-worktree",
        7,
        f"git update-index --skip-worktree {HIDDEN_TEST} && rm -f {HIDDEN_TEST} && mkfifo {HIDDEN_TEST}",
        "the same FIFO, hidden from git add: writing the hidden test into it blocks",
        timeout=150,
    ),
    Attack(
        "symlink-hidden-test-outside",
        7,
        script(
            "printf 'def test_zero():\\n    pass\\n\\n\\ndef test_add():\\n    pass\\n' > \"$HOME/stub_test.py\"",
            f'ln -sfn "$HOME/stub_test.py" {HIDDEN_TEST}',
        ),
        "the hidden-test path is a symlink to a stub outside the workspace",
    ),
    Attack(
        "dir-replaced-by-file",
        7,
        "rm -rf src && echo 'not a package any more' > src",
        "a directory of the start tree becomes a file: the scored tree's tar cannot write it over the "
        "directory the deletions left (empty subdirectories stay)",
        named_in_result="src",
    ),
    Attack(
        "dir-at-empty-config-path",
        7,
        "mkdir -p .oneshot-pytest.ini && echo '[pytest]' > .oneshot-pytest.ini/x",
        "the start commit has no pytest config, so the harness writes .oneshot-pytest.ini at the rootdir last; "
        "the agent made that path a directory first, and no reset rule covers it (tar cannot write the file)",
        repo_files=(("pyproject.toml", None),),
    ),
    Attack(
        "path-over-path-max",
        7,
        script(put(".git/deep.py", PATH_OVER_PATH_MAX), "python3 .git/deep.py"),
        "a file whose path is longer than PATH_MAX (made with dir fds): the change holds it, and the tar "
        "that writes the scored tree cannot open it",
    ),
    Attack(
        "non-utf8-file-name",
        7,
        "touch \"$(printf 'bad-\\377-name.txt')\"",
        "a file name that is not UTF-8: the change reads it (surrogateescape) but the run dir's "
        "scoring_results.md cannot encode it, and the exception escapes the trial",
    ),
    Attack(
        "agent-kills-exec-server",
        7,
        KILL_EXEC_SERVER,
        "docker: the agent SIGKILLs its container's exec server while its own command runs under it; the "
        "command cut off mid-way is the agent's failure (agent_error), not a harness error",
        outcomes=("failed", "agent_error"),
    ),
    Attack(
        "tests-kill-exec-server",
        7,
        script(
            append(
                "src/calc/__init__.py",
                "\nimport os, signal\n\nos.kill(os.getppid(), signal.SIGKILL)  # the test run's parent\n",
            )
        ),
        "the code under test kills its parent; in docker that is the scoring container's exec server, and a "
        "command cut off mid-way is an InfraError (the container still runs, so it is not the memory limit)",
    ),
    Attack(
        "container-sh-broken-archive",
        7,
        "{ " + put("/usr/local/bin/sh", CONTAINER_SH_BROKEN_ARCHIVE) + "\nchmod +x /usr/local/bin/sh; } 2>/dev/null"
        " || echo 'no writable /usr/local/bin here (local sandbox)'",
        "docker: the workspace archive is made by the agent container's own `sh` (and `tar`), which the agent "
        "may replace; a malformed archive raises tarfile.ReadError out of the trial (no stop, no JSON item)",
    ),
]

ATTACKS += [
    # 8. Tests that aren't pytest: reports from the agent, scripts the command runs
    Attack(
        "reward-file-in-workspace",
        8,
        script(
            *(put(path, "1\n") for path in ("reward.txt", "logs/verifier/reward.txt", ".oneshot/verifier/reward.txt"))
        ),
        "reward files in the workspace, where a careless harness might look: the verifier dir is outside it",
        meta=REWARD_MODE,
        hidden_files=REWARD_HIDDEN,
        fail_to_pass="tests.command",
    ),
    Attack(
        "reward-file-in-agent-home",
        8,
        script(
            'mkdir -p "$HOME/.oneshot/verifier" && echo 1 > "$HOME/.oneshot/verifier/reward.txt"',
            "mkdir -p /logs/verifier 2>/dev/null && echo 1 > /logs/verifier/reward.txt || true",
        ),
        "the verifier dir's path in the agent's own sandbox (and Harbor's /logs/verifier): scoring has its own",
        meta=REWARD_MODE,
        hidden_files=REWARD_HIDDEN,
        fail_to_pass="tests.command",
    ),
    Attack(
        "reward-planted-by-tests-setup",
        8,
        script(append("src/calc/__init__.py", PLANT_REWARD_ON_IMPORT)),
        "tests.setup imports the agent's code, which writes reward.txt = 1 into the verifier dir's path "
        "before the run: the harness removes and remakes the dir right before the command",
        meta={
            "tests": {
                **REWARD_MODE["tests"],
                "setup": ["python3 -c 'import sys; sys.path.insert(0, \"src\"); import calc'"],
            }
        },
        hidden_files=REWARD_HIDDEN,
        fail_to_pass="tests.command",
    ),
    Attack(
        "sourced-script-rewritten",
        8,
        script(put("tests/lib.sh", 'echo 1 > "$ONESHOT_VERIFIER_DIR/reward.txt"; exit 0\n')),
        "the hidden check sources the start commit's tests/lib.sh, which the agent rewrites: test infrastructure",
        meta=REWARD_MODE,
        repo_files=(("tests/lib.sh", "# shared helpers of the checks\n"),),
        hidden_files=(("tests/check.sh", ". tests/lib.sh\n" + CHECK_SH),),
        fail_to_pass="tests.command",
    ),
    Attack(
        "command-script-rewritten",
        8,
        script(put("run-checks.sh", 'echo 1 > "$ONESHOT_VERIFIER_DIR/reward.txt"\n')),
        "tests.command runs the start commit's ./run-checks.sh, which the agent rewrites: a file the command names",
        meta={"tests": {**REWARD_MODE["tests"], "command": "sh run-checks.sh"}},
        repo_files=(("run-checks.sh", "exec sh tests/check.sh\n"),),
        hidden_files=REWARD_HIDDEN,
        fail_to_pass="tests.command",
    ),
    Attack(
        "junit-file-in-workspace-and-home",
        8,
        script(
            put("junit.xml", ALL_PASSED_JUNIT),
            'mkdir -p "$HOME/.oneshot/verifier"',
            'cp junit.xml "$HOME/.oneshot/verifier/"',
        ),
        "an all-passed JUnit report in the workspace and the agent's HOME",
        meta=JUNIT_MODE,
        fail_to_pass=JUNIT_ID,
    ),
    Attack(
        "junit-symlink-at-import",
        8,
        script(append("src/calc/__init__.py", SYMLINK_JUNIT_ON_IMPORT)),
        "the code under test makes junit.xml a symlink to a read-only forged report (pytest writes through the "
        "link, or fails to): a report that is not a regular file is not read",
        meta=JUNIT_MODE,
        fail_to_pass=JUNIT_ID,
    ),
    Attack(
        "junit-runner-config-addopts",
        8,
        script(put("forge.py", FORGE_PLUGIN), append("pyproject.toml", 'addopts = "-p forge"\n')),
        "the JUnit-mode task's pytest reads pyproject.toml, which the task declares as test infrastructure",
        meta=JUNIT_MODE,
        fail_to_pass=JUNIT_ID,
    ),
    Attack(
        "reward-then-kill-check",
        8,
        script(append("src/calc/__init__.py", REWARD_THEN_KILL_CHECK)),
        "the check writes its reward last; the code under test plants 1 and SIGKILLs the check first: a reward "
        "counts only from a command that exits 0",
        meta={"tests": {**REWARD_MODE["tests"], "command": "bash tests/check.sh"}},
        hidden_files=(("tests/check.sh", CHECK_WRITES_LAST),),
        fail_to_pass="tests.command",
    ),
    Attack(
        "ctrf-deeply-nested",
        8,
        script(append("src/calc/__init__.py", DEEP_CTRF)),
        "the code under test writes a deeply nested ctrf.json: a RecursionError out of the parser was an error",
        meta={
            "tests": {
                "mode": "ctrf",
                "command": "python3 -I -c 'import sys; sys.path.insert(0, \"src\"); import calc'",
                "fail_to_pass": ["test_add"],
                "pass_to_pass": [],
            }
        },
        fail_to_pass="test_add",
    ),
    Attack(
        "pytest-results-deeply-nested",
        8,
        script(append("src/calc/__init__.py", DEEP_RESULTS)),
        "pytest mode: deeply nested JSON in the launcher's results file (its path read from /proc/self/environ)",
    ),
]

ATTACK_PARAMS = [pytest.param(attack, id=attack.id) for attack in ATTACKS]
assert len({attack.id for attack in ATTACKS}) == len(ATTACKS)


def assert_not_forged(run: Any, item_id: str, attack: Attack) -> None:
    """The item failed (not passed, not a harness error) and its fail_to_pass test did not pass.

    ``run`` is the ``run_and_parse`` fixture's ``ParsedRun``."""
    item = run.items()[item_id]
    assert item["outcome"] in attack.outcomes, f"{attack.id}: outcome {item['outcome']}: {item['reason']}"
    statuses = (item.get("tests") or {}).get("statuses", {})
    assert not statuses or attack.fail_to_pass in statuses, f"{attack.id}: {attack.fail_to_pass} not graded: {statuses}"
    assert statuses.get(attack.fail_to_pass) != "passed", f"{attack.id}: {attack.fail_to_pass} passed"
    run.result.assert_outcomes(failed=1)
    if attack.named_in_result:
        assert attack.named_in_result in json.dumps(item), (
            f"{attack.id}: the result never names {attack.named_in_result}"
        )


def run_agent(run_and_parse: Any, sandbox: str, command: str, timeout: float = 240) -> Any:
    """Run the ``calc`` task in ``tasks/`` with ``command`` as the agent (a ``ParsedRun``)."""
    return run_and_parse(
        "tasks", f"--oneshot-sandbox={sandbox}", "--oneshot-agent=command", f"--oneshot-agent-cmd={command}",
        timeout=timeout,
    )  # fmt: skip


MODES = [
    pytest.param(REWARD_MODE, REWARD_HIDDEN, "tests.command", id="reward"),
    pytest.param(JUNIT_MODE, (), JUNIT_ID, id="junit"),
]
"""The non-pytest modes' fixtures (meta, hidden files, graded id), for their honest-fix controls."""


def assert_honest_fix_passes(run: Any, fail_to_pass: str = FAIL_TO_PASS) -> None:
    """The control: under the same fixture, fixing the bug is a pass whose change is just the fix."""
    run.result.assert_outcomes(passed=1)
    item = run.items()[ITEM]
    assert item["outcome"] == "passed", item["reason"]
    assert item["tests"]["statuses"][fail_to_pass] == "passed"
    assert item["changed_files"] == ["src/calc/__init__.py"]


def assert_untrusted_run_fails(run: Any) -> None:
    """A failing ``tests.setup`` makes the item failed (never passed, never a harness error), with the reason."""
    item = run.items()[ITEM]
    assert item["outcome"] == "failed" and "tests.setup" in item["reason"], item["reason"]
    run.result.assert_outcomes(failed=1)
