"""Trials in flight within one pytest process (``--oneshot-concurrency N``).

pytest runs one item at a time, and a model-bound trial mostly waits for its model: 64 rollouts
should not need 64 pytest processes. With N > 1, when an item's setup asks for its trial, the
trials of the next items this process will run are started too -- from ``session.items`` in
order, or under xdist from the worker's queue (``-n 1`` sends it every item) -- up to N at once,
in threads. Each item still receives its own result in its own turn, so pytest reports, JUnit
and the JSON report come out as without concurrency; phase hooks are called then, in the main
thread. Trials already running when the session stops (``-x``, Ctrl-C) have their sandboxes
stopped, and their results are dropped.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

from pytest_oneshot.sandbox import Sandbox, SandboxFactory, SandboxSpec
from pytest_oneshot.trial import TrialResult

_REFILL_SEC = 0.2


class ConcurrentItem(Protocol):
    """What the pool needs of an item (``collect.TaskItem``)."""

    @property
    def nodeid(self) -> str: ...

    def trial_runner(self) -> TrialRunner: ...


@dataclass
class TrialRunner:
    """One item's trial, ready to run in any thread; its phases are kept for the item's own turn.

    ``run`` takes the phase callback and a wrapper for the sandbox factory, which the runner uses
    to keep the trial's sandboxes, so a closing pool can stop them."""

    run: Callable[[Callable[[str, float], None], Callable[[SandboxFactory], SandboxFactory]], TrialResult]
    phases: list[tuple[str, float]] = field(default_factory=list)
    sandboxes: list[Sandbox] = field(default_factory=list)

    def __call__(self) -> TrialResult:
        return self.run(lambda phase, duration: self.phases.append((phase, duration)), self._tracked)

    def _tracked(self, factory: SandboxFactory) -> SandboxFactory:
        def make(spec: SandboxSpec) -> Sandbox:
            sandbox = factory(spec)
            self.sandboxes.append(sandbox)
            return sandbox

        return make


class TrialPool:
    """Runs the trials of upcoming items ahead, at most ``concurrency`` at once."""

    plugin_name = "oneshot-concurrency"

    def __init__(self, session: pytest.Session, concurrency: int) -> None:
        self.session = session
        self.concurrency = concurrency
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="oneshot-trial")
        self._lock = threading.Lock()
        self._started: dict[str, tuple[Future[TrialResult], TrialRunner]] = {}
        self._done: set[str] = set()
        self._closing = False
        self._worker = _xdist_worker(session.config)
        if self._worker is not None:
            _guard_steals(self._worker, self._is_started)

    def result(self, item: ConcurrentItem, on_phase: Callable[[str, float], None]) -> TrialResult:
        """``item``'s trial result (started now if it was not), after starting the next ones."""
        self._fill(item)
        with self._lock:
            future, runner = self._started[item.nodeid]
        try:
            while not wait([future], timeout=_REFILL_SEC).done:
                self._fill(None)  # xdist may have sent this worker more items meanwhile
            result = future.result()
        finally:
            with self._lock:
                del self._started[item.nodeid]
                self._done.add(item.nodeid)
            self._fill(None)
        for phase, duration in runner.phases:
            on_phase(phase, duration)
        return result

    def pytest_sessionfinish(self) -> None:
        self.close()
        self.session.config.pluginmanager.unregister(self)

    def close(self) -> None:
        """Stop trials nobody will wait for: queued ones are cancelled, running ones' sandboxes stopped."""
        with self._lock:
            self._closing = True
            unfinished = [(future, runner) for future, runner in self._started.values() if not future.done()]
        for future, runner in unfinished:
            if not future.cancel():
                for sandbox in list(runner.sandboxes):
                    with contextlib.suppress(Exception):  # best effort: the trial's own cleanup follows
                        sandbox.stop()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _is_started(self, item: pytest.Item) -> bool:
        with self._lock:
            return item.nodeid in self._started or item.nodeid in self._done

    def _fill(self, current: ConcurrentItem | None) -> None:
        """Start ``current`` and then upcoming items until ``concurrency`` trials run."""
        candidates: list[Any] = [current] if current is not None else []
        candidates += [item for item in self._upcoming() if _runs_a_trial(item)]
        with self._lock:
            running = sum(not future.done() for future, _ in self._started.values())
            for item in candidates:
                if self._closing or (item is not current and running >= self.concurrency):
                    break
                if item.nodeid in self._started or item.nodeid in self._done:
                    continue
                runner = item.trial_runner()
                future = self._executor.submit(runner)
                future.add_done_callback(lambda _: self._fill(None))
                self._started[item.nodeid] = (future, runner)
                running += 1

    def _upcoming(self) -> Iterator[pytest.Item]:
        """The items this process will run next, in order."""
        items = self.session.items
        if self._worker is None:
            with self._lock:
                seen = self._done | self._started.keys()
            yield from (item for item in items if item.nodeid not in seen)
            return
        with self._worker.torun.lock() as queue:
            indices = [self._worker.nextitem_index, *queue]
        yield from (items[index] for index in indices if isinstance(index, int))


def _runs_a_trial(item: pytest.Item) -> bool:
    """Only task items run trials; one pytest would skip at setup is left to pytest."""
    if not hasattr(item, "trial_runner"):
        return False
    return item.get_closest_marker("skip") is None and item.get_closest_marker("skipif") is None


def _xdist_worker(config: pytest.Config) -> Any | None:
    """The xdist worker's interactor (its ``torun`` queue of item indices), on an xdist worker."""
    if not hasattr(config, "workerinput"):
        return None
    for plugin in config.pluginmanager.get_plugins():
        if hasattr(plugin, "torun") and hasattr(plugin, "steal") and hasattr(plugin, "nextitem_index"):
            return plugin
    return None


def _guard_steals(worker: Any, started: Callable[[pytest.Item], bool]) -> None:
    """xdist's work stealing takes pending items from a worker's queue; one whose trial already
    started here must stay here, or it would run twice. xdist steals all requested or none."""
    steal = worker.steal

    def guarded(indices: list[int]) -> None:
        if any(started(worker.session.items[index]) for index in indices):
            worker.sendevent("unscheduled", indices=[])
            return
        steal(indices)

    worker.steal = guarded


def xdist_scheduler(config: pytest.Config, log: Any, concurrency: int) -> Any:
    """xdist's load scheduling, keeping ``concurrency`` + 1 items queued on each worker.

    Plain load scheduling sends a worker only a few items at a time (it expects one test at a
    time per worker), which would leave a worker's trial pool little to run ahead."""
    from xdist.scheduler import LoadScheduling

    class KeepWorkersFed(LoadScheduling):  # type: ignore[misc]
        def schedule(self) -> None:
            super().schedule()
            for node in self.nodes:
                self._top_up(node)

        def check_schedule(self, node: Any, duration: float = 0) -> None:
            if self.pending and not node.shutting_down:
                self._top_up(node)
            else:
                super().check_schedule(node, duration)

        def _top_up(self, node: Any) -> None:
            missing = concurrency + 1 - len(self.node2pending[node])
            if self.pending and missing > 0:
                self._send_tests(node, missing)
            if not self.pending and not node.shutting_down:
                node.shutdown()

    return KeepWorkersFed(config, log)
