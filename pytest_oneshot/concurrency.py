"""Trials in flight within one pytest process (``--oneshot-concurrency N``, default 1).

pytest runs one item at a time, while a trial mostly waits: for its sandboxes to start, for its
model. So when an item's setup asks for its trial, the trials of the next items this process will
run -- from ``session.items`` in order, or under xdist from the worker's queue -- are started too,
in threads: up to N of them run their agents at once, and N more start their sandboxes ahead of
their turn (a :class:`OrderedGate` lets them on in item order); a trial's tests run as the next
agent starts, so agents waiting on a model leave the CPU to the tests (at most 2N trials are
unfinished). Each item still receives its own result in its own turn, so pytest's reports, JUnit
and the JSON report come out as without concurrency. ``pytest_oneshot_phase`` is called as each
phase ends, from the thread running the trial (the phases of different items may interleave).
Sandboxes are stopped in the background once a trial's files are written, and the session waits for
that at its end. Trials still running when the session stops (``-x``, Ctrl-C) have their sandboxes
stopped and their results dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

from pytest_oneshot.errors import InfraError
from pytest_oneshot.result import TrialResult
from pytest_oneshot.sandbox import Sandbox, SandboxSpec
from pytest_oneshot.trial import TrialConfig, run_trial

_REFILL_SEC = 0.2
"""How often a waiting item wakes: an xdist worker looks for items xdist sent it meanwhile (without
xdist, every upcoming item is known from the start, and a finished trial's callback starts the
next); and a Ctrl-C the kernel gave to a trial's thread reaches the main thread, which only runs
Python's signal handler once its wait returns (an endless wait hung the session)."""


class ConcurrentItem(Protocol):
    """What the pool needs of an item (``collect.TaskItem``)."""

    @property
    def nodeid(self) -> str: ...

    def trial_config(self) -> TrialConfig: ...

    def trial_phase(self, phase: str, duration: float) -> None:
        """A phase of this item's trial ended (called from the thread running it)."""

    def trial_finished(self, result: TrialResult) -> None:
        """The trial ended while the session ran, so its result counts (called from the thread running
        it; not for a trial the session's end stopped, whose result is dropped)."""


class OrderedGate:
    """At most ``width`` trials inside at once, let in by ticket order (the items' order)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self._changed = threading.Condition()
        self._issued = 0
        self._lowest_waiting = 0
        self._settled: set[int] = set()
        """Tickets that entered or left without entering."""
        self._inside = 0
        self._cancelled = False

    def ticket(self) -> Ticket:
        with self._changed:
            self._issued += 1
            return Ticket(self, self._issued - 1)

    def cancel(self) -> None:
        """The session stops: every trial still waiting gets an error instead of its turn."""
        with self._changed:
            self._cancelled = True
            self._changed.notify_all()

    def _settle(self, number: int) -> None:
        self._settled.add(number)
        while self._lowest_waiting in self._settled:
            self._settled.discard(self._lowest_waiting)
            self._lowest_waiting += 1
        self._changed.notify_all()


@dataclass
class Ticket:
    """One trial's place at the gate (:class:`pytest_oneshot.trial.Gate`)."""

    gate: OrderedGate
    number: int
    entered: bool = False
    left: bool = False

    def enter(self) -> None:
        gate = self.gate
        with gate._changed:
            gate._changed.wait_for(
                lambda: gate._cancelled or (self.number == gate._lowest_waiting and gate._inside < gate.width)
            )
            if gate._cancelled:
                raise InfraError("agent", "the session stopped before this trial's turn")
            self.entered = True
            gate._inside += 1
            gate._settle(self.number)

    def leave(self) -> None:
        gate = self.gate
        with gate._changed:
            if self.left:
                return
            self.left = True
            if self.entered:
                gate._inside -= 1
                gate._changed.notify_all()
            else:
                gate._settle(self.number)


@dataclass
class _Trial:
    """A started trial: its result to come, and the sandboxes it made."""

    future: Future[TrialResult] | None = None
    sandboxes: list[Sandbox] = field(default_factory=list)


class TrialPool:
    """Runs the trials of upcoming items ahead: ``concurrency`` at once, as many more starting."""

    plugin_name = "oneshot-concurrency"

    def __init__(self, session: pytest.Session, concurrency: int) -> None:
        self.session = session
        self.concurrency = concurrency
        self._gate = OrderedGate(concurrency)
        self._executor = ThreadPoolExecutor(max_workers=2 * concurrency, thread_name_prefix="oneshot-trial")
        self._cleanup = ThreadPoolExecutor(max_workers=2, thread_name_prefix="oneshot-cleanup")
        self._cleanups: list[Future[None]] = []
        self._lock = threading.Lock()
        self._started: dict[str, _Trial] = {}
        self._done: set[str] = set()
        self._closing = False
        self._worker = _xdist_worker(session.config)
        if self._worker is not None:
            _guard_steals(self._worker, self._is_started)

    def result(self, item: ConcurrentItem) -> TrialResult:
        """``item``'s trial result (started now if it was not), after starting the next ones."""
        self._fill(item)
        with self._lock:
            trial = self._started[item.nodeid]
        assert trial.future is not None
        try:
            while not wait([trial.future], timeout=_REFILL_SEC).done:
                self._fill(None)
        finally:  # interrupted (Ctrl-C): the trial stays unfinished, for close() to stop
            if trial.future.done():
                with self._lock:
                    del self._started[item.nodeid]
                    self._done.add(item.nodeid)
                self._fill(None)
        return trial.future.result()

    def pytest_sessionfinish(self) -> None:
        self.close()
        self.session.config.pluginmanager.unregister(self)

    def close(self) -> None:
        """Stop trials nobody will wait for, then wait for every sandbox to be stopped."""
        with self._lock:
            self._closing = True
            unfinished = [trial for trial in self._started.values() if trial.future and not trial.future.done()]
        self._gate.cancel()
        for trial in unfinished:
            assert trial.future is not None
            if not trial.future.cancel():
                for sandbox in list(trial.sandboxes):
                    with contextlib.suppress(Exception):  # best effort: the trial's own cleanup follows
                        sandbox.stop()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._cleanup.shutdown(wait=True)
        for stopped in self._cleanups:
            if (failure := stopped.exception()) is not None:
                warnings.warn(f"oneshot: stopping a sandbox failed: {failure}", stacklevel=1)

    def _is_started(self, item: pytest.Item) -> bool:
        with self._lock:
            return item.nodeid in self._started or item.nodeid in self._done

    def _fill(self, current: ConcurrentItem | None) -> None:
        """Start ``current`` and then upcoming items, up to twice ``concurrency`` unfinished trials."""
        candidates: list[Any] = [current] if current is not None else []
        candidates += [item for item in self._upcoming() if _runs_a_trial(item)]
        with self._lock:
            unfinished = sum(trial.future is not None and not trial.future.done() for trial in self._started.values())
            for item in candidates:
                if self._closing or (item is not current and unfinished >= 2 * self.concurrency):
                    break
                if item.nodeid in self._started or item.nodeid in self._done:
                    continue
                trial = _Trial()
                config = item.trial_config()
                config = dataclasses.replace(
                    config,
                    sandbox_factory=self._tracked(config, trial),
                    gate=self._gate.ticket(),
                    stop_later=self._stop_later,
                )
                trial.future = self._executor.submit(self._run, config, item)
                trial.future.add_done_callback(lambda _: self._fill(None))
                self._started[item.nodeid] = trial
                unfinished += 1

    def _run(self, config: TrialConfig, item: ConcurrentItem) -> TrialResult:
        try:
            result = run_trial(config, item.trial_phase)
        finally:
            assert config.gate is not None
            config.gate.leave()  # also when the trial could not start: the next ones must not wait for it
        with self._lock:  # close() sets _closing before it stops any sandbox: this trial ran undisturbed
            if not self._closing:
                item.trial_finished(result)
        return result

    def _stop_later(self, stop: Callable[[], None]) -> None:
        """``TrialConfig.stop_later``: sandboxes stop in the background; :meth:`close` waits for them."""
        self._cleanups.append(self._cleanup.submit(stop))

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

    @staticmethod
    def _tracked(config: TrialConfig, trial: _Trial) -> Callable[[SandboxSpec], Sandbox]:
        """The trial's sandbox factory, keeping what it makes so :meth:`close` can stop it."""
        factory = config.sandbox_factory

        def make(spec: SandboxSpec) -> Sandbox:
            sandbox = factory(spec)
            trial.sandboxes.append(sandbox)
            return sandbox

        return make


def _runs_a_trial(item: pytest.Item) -> bool:
    """Only task items run trials, not one a resumed run finished; one pytest would skip at setup is
    left to pytest."""
    if not hasattr(item, "trial_config") or getattr(item, "resumed", None) is not None:
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
    """xdist's load scheduling, keeping enough items queued on each worker for its trial pool.

    Plain load scheduling sends a worker only a few items at a time (it expects one test at a
    time per worker), which would leave a worker's pool little to run or start ahead."""
    from xdist.scheduler import LoadScheduling

    wanted = 2 * concurrency + 1

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
            missing = wanted - len(self.node2pending[node])
            if self.pending and missing > 0:
                self._send_tests(node, missing)
            if not self.pending and not node.shutting_down:
                node.shutdown()

    return KeepWorkersFed(config, log)
