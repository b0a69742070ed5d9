"""Reading what a non-pytest test command reports: a reward, a JUnit XML file or a CTRF JSON file.

Pure functions over the report's bytes, so every rule is tested without a sandbox. A report that
cannot be trusted raises :class:`ReportError` with the reason: the code under test runs under the
command and can write the report itself, so an unreadable, inconsistent or out-of-range report is
never a pass (the caller turns the reason into the run's ``problem``).
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable

_SEVERITY = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
_CTRF_STATUS = {"passed": "passed", "failed": "failed", "skipped": "skipped", "pending": "skipped", "other": "error"}


class ReportError(ValueError):
    """The report is missing, malformed or inconsistent; the message says how."""


def parse_reward(data: bytes, name: str) -> float:
    """A reward in [0, 1]: ``reward.txt`` holds one number; a ``.json`` report holds ``{"reward": x}``
    (Harbor's two forms)."""
    try:
        text = data.decode("utf-8").strip()
        value = json.loads(text)["reward"] if name.endswith(".json") else float(text)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError):  # RecursionError: [[[[...
        raise ReportError(f"the reward file {name} holds no number: {data[:80]!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReportError(f"the reward file {name} holds no number: {data[:80]!r}")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ReportError(f"the reward in {name} is outside [0, 1] (got {value})")
    return float(value)


def _record(results: dict[str, str], ids: Iterable[str], status: str) -> None:
    """Every id a test is known by gets its worst status (two tests of one name both count)."""
    for test_id in ids:
        if _SEVERITY[status] >= _SEVERITY.get(results.get(test_id, "passed"), 0):
            results[test_id] = status


def _ids(name: str, group: str) -> list[str]:
    return [name, f"{group}::{name}"] if group else [name]


def parse_junit(data: bytes, name: str) -> tuple[dict[str, str], int]:
    """Per-test statuses of a JUnit XML report by ``name`` and ``classname::name``, and how many failed.

    Raises:
        ReportError: not JUnit XML, a testcase without a name, or a suite whose ``tests``, ``failures``,
            ``errors`` or ``skipped`` count disagrees with its testcases.
    """
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ReportError(f"the JUnit report {name} is not XML ({exc})") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise ReportError(f"the JUnit report {name} has no <testsuites> or <testsuite> root (got <{root.tag}>)")
    results: dict[str, str] = {}
    failed = 0
    for suite in root.iter("testsuite"):  # the root too, when it is one
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for case in suite.findall("testcase"):
            test_name = case.get("name")
            if not test_name:
                raise ReportError(f"the JUnit report {name} has a testcase without a name")
            status = "passed"
            for child, child_status, counter in (
                ("skipped", "skipped", "skipped"),
                ("failure", "failed", "failures"),
                ("error", "error", "errors"),
            ):
                if case.find(child) is not None:
                    status, counts[counter] = child_status, counts[counter] + 1
            counts["tests"] += 1
            failed += status in ("failed", "error")
            _record(results, _ids(test_name, case.get("classname", "")), status)
        if suite.find("testsuite") is None:
            for key, counted in counts.items():
                stated = suite.get(key)
                if stated is not None and stated.strip() != str(counted):
                    raise ReportError(
                        f"the JUnit report {name}: suite {suite.get('name', '?')!r} says {key}={stated} "
                        f"but lists {counted}"
                    )
    return results, failed


def parse_ctrf(data: bytes, name: str) -> tuple[dict[str, str], int]:
    """Per-test statuses of a CTRF report (``results.tests[]``) by ``name`` and ``suite::name``, and how
    many failed.

    Raises:
        ReportError: not CTRF JSON, a test without a name or with an unknown status, or a
            ``results.summary`` whose counts disagree with the tests.
    """
    try:
        results_block = json.loads(data)["results"]
        tests, summary = results_block["tests"], results_block.get("summary", {})
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: nesting json cannot parse
        raise ReportError(f"the CTRF report {name} is not CTRF JSON (results.tests)") from None
    if not isinstance(tests, list) or not isinstance(summary, dict):
        raise ReportError(f"the CTRF report {name}: results.tests must be a list and results.summary an object")
    results: dict[str, str] = {}
    counts = dict.fromkeys(("tests", *_CTRF_STATUS), 0)
    for test in tests:
        test_name = test.get("name") if isinstance(test, dict) else None
        ctrf_status = test.get("status") if isinstance(test, dict) else None
        if not isinstance(test_name, str) or not test_name or ctrf_status not in _CTRF_STATUS:
            raise ReportError(f"the CTRF report {name} has a test without a name or a known status: {test!r:.120}")
        counts["tests"] += 1
        counts[ctrf_status] += 1
        suite = test.get("suite")
        _record(results, _ids(test_name, suite if isinstance(suite, str) else ""), _CTRF_STATUS[ctrf_status])
    for key, counted in counts.items():
        stated = summary.get(key)
        if stated is not None and stated != counted:
            raise ReportError(f"the CTRF report {name}: summary says {key}={stated!r} but lists {counted}")
    return results, counts["failed"] + counts["other"]
