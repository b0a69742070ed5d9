"""JUnit: ``<properties>`` for a task item (via ``item.user_properties``), and a suite per model.

pytest writes testcase-level properties for every junit_family; strict xunit2 schema
validators reject them, so users who validate should set ``junit_family=xunit1``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_oneshot.result import TrialResult

if TYPE_CHECKING:
    from pytest_oneshot.scoring.tests import TestKind

_KINDS: tuple[TestKind, ...] = ("fail_to_pass", "pass_to_pass")


def junit_properties(result: TrialResult) -> list[tuple[str, object]]:
    props: list[tuple[str, object]] = [
        ("oneshot.outcome", result.outcome),
        ("oneshot.resolved", result.resolved),
        ("oneshot.score", "unscored" if result.score is None else round(result.score, 4)),
        ("oneshot.agent", result.agent.name),
        ("oneshot.model", result.model or ""),
        ("oneshot.rollout", result.rollout),
        ("oneshot.run_dir", result.run_dir),
    ]
    for rubric in result.rubrics:
        props.append((f"oneshot.rubric.{rubric.id}", "unscored" if rubric.score is None else round(rubric.score, 4)))
        if rubric.scored_by == "judge":
            props.append((f"oneshot.rubric.{rubric.id}.judge", rubric.judge_model or ""))
    if result.tests is not None:
        for kind in _KINDS:
            props.append((f"oneshot.{kind}.passed", result.tests.count(kind)))
            props.append((f"oneshot.{kind}.total", result.tests.total(kind)))
    if result.metric is not None:  # a research-bench task: its score is the metric's delta
        props += [(f"oneshot.metric.{key}", getattr(result.metric, key)) for key in ("before", "after", "delta")]
    if result.tokens is not None:
        props += [(f"oneshot.tokens.{name}", value) for name, value in result.tokens.items()]
        props.append(("oneshot.model_requests", result.model_requests))
        props.append(("oneshot.cost_usd", "unknown" if result.cost_usd is None else result.cost_usd))
    if result.trace:
        props.append(("oneshot.trace", f"{result.run_dir}/{result.trace}"))
    props += [(f"oneshot.phase.{phase}", round(seconds, 3)) for phase, seconds in result.phases.items()]
    return props


def _model_properties(model: dict[str, Any]) -> list[tuple[str, object]]:
    props: list[tuple[str, object]] = [
        (f"oneshot.{key}", model[key]) for key in ("model", "tasks", "attempts", "errors", "passed", "solved_tasks")
    ]
    props += [("oneshot.pass_rate", model["pass_rate"]), ("oneshot.pass_rate_ci95", model["pass_rate_ci95"])]
    props += [(f"oneshot.pass@{k}", value) for k, value in model["pass_at_k"].items()]
    props += [(f"oneshot.pass^{k}", value) for k, value in model["pass_hat_k"].items()]
    props += [("oneshot.mean_score", model["mean_score"]), ("oneshot.mean_score_ci95", model["mean_score_ci95"])]
    for kind in ("tokens", "cost_usd"):
        props += [(f"oneshot.{kind}.{key}", value) for key, value in model[kind].items()]
    props += [(f"oneshot.wall_sec.{key}", value) for key, value in model["wall_sec"].items()]
    return [(name, "" if value is None else value) for name, value in props]


def _suite(root: ET.Element, name: str, gates: list[dict[str, Any]], props: list[tuple[str, object]]) -> None:
    """A ``<testsuite>``: ``props`` as properties and in a ``summary`` testcase, then a testcase per gate."""
    failed = sum(1 for gate in gates if not gate["held"])
    attrib = {"name": name, "tests": str(len(gates) + bool(props)), "failures": str(failed), "errors": "0"}
    suite = ET.SubElement(root, "testsuite", {**attrib, "skipped": "0", "time": "0"})
    if props:
        properties = ET.SubElement(suite, "properties")
        for prop, value in props:
            ET.SubElement(properties, "property", name=prop, value=str(value))
        summary = ET.SubElement(suite, "testcase", classname=name, name="summary", time="0")
        ET.SubElement(summary, "system-out").text = "\n".join(f"{prop} = {value}" for prop, value in props)
    for gate in gates:
        case = ET.SubElement(suite, "testcase", classname=name, name=f"gate {gate['gate']}", time="0")
        if not gate["held"]:
            ET.SubElement(case, "failure", message=gate["reason"]).text = gate["reason"]
        ET.SubElement(case, "system-out").text = gate["reason"]


def append_model_suites(path: Path, models: list[dict[str, Any]], gates: list[dict[str, Any]]) -> None:
    """Add a ``<testsuite name="oneshot.model.<model>">`` per model to pytest's JUnit file.

    Dashboards (GitLab, the GitHub test-report actions, Jenkins) list suites and testcases but not
    ``<properties>`` (Jenkins only with ``keepProperties``), so each suite carries the model's
    figures as properties *and* as testcases: ``summary`` (the figures in ``<system-out>``) and one
    per gate of that model, failing when the gate fails; gates over the whole run (errors) go in a
    ``oneshot.run`` suite. Item testcases are left exactly as pytest wrote them.
    """
    tree = ET.parse(path)
    root = tree.getroot()
    if root.tag != "testsuites":  # pytest always writes <testsuites>; anything else is not ours to touch
        return
    for model in models:
        own = [gate for gate in gates if gate["model"] == model["model"]]
        _suite(root, f"oneshot.model.{model['model']}", own, _model_properties(model))
    run_gates = [gate for gate in gates if gate["model"] is None]
    if run_gates:
        _suite(root, "oneshot.run", run_gates, [])
    tree.write(path, encoding="utf-8", xml_declaration=True)
