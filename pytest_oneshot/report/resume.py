"""``--oneshot-resume``: which items of a run finished, so a resumed run reports them instead of running them again.

An item's directory gets ``finished.json`` when its trial ended while the session was still running:
then ``evaluation_results.json`` beside it is the trial's final result. A trial killed with its
process (``kill -9``, a crash) never gets one (its results file says "interrupted"), nor does one
stopped by the session's end (Ctrl-C, ``-x``), whose result was dropped. The file names the item's
key -- the task's content digest, agent, model and rollout -- so a changed task runs again.

Before a trial writes into an item directory that already exists (an unfinished or outdated attempt
of the run being resumed), the old directory is renamed ``<item>.prev-N``: no evidence is overwritten.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import ValidationError

from pytest_oneshot.files import write_atomic
from pytest_oneshot.report.rundir import item_dir_name
from pytest_oneshot.result import TrialResult

FINISHED_FILE = "finished.json"
_RESULTS_FILE = "evaluation_results.json"


@dataclass(frozen=True)
class ItemKey:
    """What makes a recorded trial stand for an item of the resumed run."""

    task_digest: str
    agent: str
    model: str | None
    rollout: int


@dataclass(frozen=True)
class Finished:
    """A finished item of a run: the pytest node it was, and its result."""

    nodeid: str
    result: TrialResult


def write_finished(item_dir: Path, key: ItemKey, nodeid: str) -> None:
    """Mark ``item_dir``'s trial as finished (its results file is final)."""
    write_atomic(item_dir / FINISHED_FILE, json.dumps({"key": asdict(key), "nodeid": nodeid}, indent=2).encode())


def read_finished(item_dir: Path, key: ItemKey | None = None) -> Finished | None:
    """The finished trial recorded in ``item_dir`` (of ``key``, when given), with its run dir where it
    is now (a run dir may have moved, e.g. a CI artifact); None when there is none, it is of another
    key, or its files cannot be read (then the item runs again)."""
    try:
        marker = json.loads((item_dir / FINISHED_FILE).read_text(encoding="utf-8"))
        if key is not None and marker["key"] != asdict(key):
            return None
        result = TrialResult.model_validate_json((item_dir / _RESULTS_FILE).read_bytes())
        return Finished(str(marker["nodeid"]), result.model_copy(update={"run_dir": str(item_dir)}))
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return None


def finished_items(run_dir: Path) -> list[Finished]:
    """Every finished item of ``run_dir`` (not the renamed earlier attempts), in directory order."""
    found = []
    for marker in sorted(run_dir.glob(f"*/{FINISHED_FILE}")):
        finished = read_finished(marker.parent)
        if finished is not None and marker.parent.name == item_dir_name(finished.result.item_id):
            found.append(finished)
    return found


def set_aside(item_dir: Path) -> Path | None:
    """Rename an earlier attempt's ``item_dir`` to the first free ``<name>.prev-N``; None if there is none."""
    if not item_dir.exists():
        return None
    number = 1
    while (aside := item_dir.with_name(f"{item_dir.name}.prev-{number}")).exists():
        number += 1
    item_dir.rename(aside)
    return aside
