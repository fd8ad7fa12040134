"""Progress of long runs: a hook that training loops call, and the sweep's progress display.

The hook. Long loops (an epoch of :func:`ar_agents.training.train`, a DAgger round, PPO's
roll-outs, the neural best-in-class search) call ``report(stage, i, total)``: "step ``i`` (1-based)
of ``total`` of ``stage`` is under way". Nobody listening is the normal case and costs one test
of an empty list. :func:`listen` registers a callback for the duration of a ``with`` block::

    from ar_agents.evaluation.progress import listen

    with listen(lambda stage, i, total: print(stage, i, total)):
        BC(policy="transformer", epochs=3).fit(task, demos)   # epoch 1 3, epoch 2 3, epoch 3 3

Nested stages (a DAgger round, then the epochs of its training) are reported in turn; a display
shows the latest value of each, an outer stage's report resetting the inner ones (:class:`Stages`).

The display. :class:`Progress` is what the sweep engine (``ar_agents.evaluation.sweep.run_cells``)
reports to: a callable given as ``progress=`` receives :class:`ProgressEvent` objects (``start``;
one ``done`` or ``failed`` per cell; ``inner`` events from inside running cells; ``end``), and
``progress=True`` shows them: on a terminal a tqdm bar (cells done / total, elapsed, ETA,
failures, and the running cell's inner stages) with one line per finished cell above it; when
the output is not a terminal (a log file, a pipe) no bar and no carriage returns, one plain line
per finished or failed cell.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

_listeners: list[Callable[[str, int, int | None], None]] = []


def report(stage: str, i: int, total: int | None = None) -> None:
    """Step ``i`` (1-based) of ``total`` (``None``: unknown) of ``stage`` is under way. A no-op
    unless someone :func:`listen` s."""
    if _listeners:
        for fn in tuple(_listeners):
            fn(stage, i, total)


def listening() -> bool:
    """Whether a callback is registered (a loop may skip work done only for the report)."""
    return bool(_listeners)


@contextlib.contextmanager
def listen(callback: Callable[[str, int, int | None], None]):
    """Call ``callback(stage, i, total)`` on every :func:`report` inside the ``with`` block."""
    _listeners.append(callback)
    try:
        yield callback
    finally:
        _listeners.remove(callback)


class Stages:
    """The latest ``(i, total)`` of each stage, outermost first. A report of a known stage drops
    the stages first reported after it (a new DAgger round resets its epochs); a new stage drops
    the stages at their last step (the fit's epochs are over when the best-in-class search
    begins; a DAgger round at its last step is dropped too when its epochs begin, the one case
    this rule gets wrong)."""

    def __init__(self):
        self.values: dict[str, tuple[int, int | None]] = {}

    def update(self, stage: str, i: int, total: int | None) -> None:
        if stage in self.values:
            keys = list(self.values)
            for later in keys[keys.index(stage) + 1:]:
                del self.values[later]
        else:
            for old, (j, t) in list(self.values.items()):
                if t is not None and j >= t:
                    del self.values[old]
        self.values[stage] = (i, total)

    def text(self) -> str:
        return " ".join(f"{s} {i}/{t}" if t is not None else f"{s} {i}" for s, (i, t) in self.values.items())


class Throttle:
    """A :func:`listen` callback that passes a report on to ``send(stage, i, total)`` at most every
    ``interval`` seconds (and always a stage's first report): what a worker process forwards."""

    def __init__(self, send: Callable[[str, int, int | None], None], interval: float = 0.5):
        self.send, self.interval = send, interval
        self.last = -float("inf")
        self.seen: set[str] = set()

    def __call__(self, stage: str, i: int, total: int | None) -> None:
        now = time.monotonic()
        if stage not in self.seen or now - self.last >= self.interval:
            self.seen.add(stage)
            self.last = now
            self.send(stage, i, total)


@dataclass(frozen=True)
class ProgressEvent:
    """One event of a run of cells.

    ``kind``: ``"start"`` (before the first cell; ``total`` cells to run), ``"done"`` (a cell
    finished: ``record``), ``"failed"`` (a cell raised: ``error``, a one-line message; the run goes
    on), ``"inner"`` (a running cell's loop reported ``stage`` step ``stage_i`` of
    ``stage_total``), ``"end"``. ``done`` / ``failed`` count the cells so far, ``cell`` is the
    cell concerned (``ar_agents.evaluation.sweep.Cell``)."""

    kind: str
    done: int
    total: int
    failed: int = 0
    cell: Any = None
    record: dict | None = None
    error: str | None = None
    stage: str | None = None
    stage_i: int | None = None
    stage_total: int | None = None


def cell_label(cell) -> str:
    return f"{cell.task} H={cell.horizon} {cell.algorithm} seed={cell.seed}"


def record_line(rec: dict, done: int, total: int, elapsed: float) -> str:
    """The plain line of a finished cell."""
    c = rec.get("approx_factor")
    h2 = rec.get("hellinger2")
    return (f"[{done}/{total}] {rec['task']} H={rec['horizon']} {rec['algorithm']} seed={rec['seed']}: "
            f"D_H^2={'n/a' if h2 is None else f'{h2:.4g}'} C={'n/a' if c is None else f'{c:.3g}'} "
            f"({rec['wall_s']:.2f}s, {elapsed:.0f}s total)")


class Progress:
    """Where a run of cells reports: a user's callable, a bar on a terminal, plain lines
    elsewhere, or nothing (``progress=False``). ``file``: the stream shown on (default: the
    ``sys.stderr`` of the moment)."""

    def __init__(self, progress: bool | Callable[[ProgressEvent], Any] = True, file=None):
        if not (isinstance(progress, bool) or callable(progress)):
            raise ValueError(f"progress must be True, False or a callable receiving ProgressEvent objects, got {progress!r}")
        self.callback = progress if callable(progress) and not isinstance(progress, bool) else None
        self.show = progress is True
        self.file = file if file is not None else sys.stderr
        self.tty = self.show and bool(getattr(self.file, "isatty", lambda: False)())
        self.total = self.done = self.failed = 0
        self.bar = None
        self.stages: dict[Any, Stages] = {}
        self.finished: set = set()  # a worker's late inner report of a finished cell is dropped
        self.current = None  # the cell whose inner stages the bar shows
        self.t0 = time.perf_counter()
        self._last_postfix = 0.0

    @property
    def active(self) -> bool:
        """Whether inner reports are wanted: by a callback, or a bar to show them on (the plain
        lines do not show them; workers forward them only when wanted)."""
        return self.tty or self.callback is not None

    def _emit(self, kind: str, **kw) -> None:
        if self.callback is not None:
            self.callback(ProgressEvent(kind, self.done, self.total, self.failed, **kw))

    def _line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.file)
        else:
            print(text, file=self.file, flush=True)

    def start(self, total: int) -> None:
        self.total, self.t0 = total, time.perf_counter()
        if self.tty and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="cell", file=self.file, dynamic_ncols=True, smoothing=0.1,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} cells [{elapsed}<{remaining}{postfix}]")
            self._postfix()
        self._emit("start")

    def _postfix(self, refresh: bool = True) -> None:
        if self.bar is None:
            return
        parts = [f"failed {self.failed}"] if self.failed else []
        stages = self.stages.get(self.current)
        if stages is not None and stages.values:
            parts.append(f"{cell_label(self.current)}: {stages.text()}")
        self.bar.set_postfix_str(", ".join(parts), refresh=refresh)
        self._last_postfix = time.monotonic()

    def inner(self, cell, stage: str, i: int, total: int | None) -> None:
        """A running cell's loop reported progress."""
        if cell in self.finished:
            return
        self.stages.setdefault(cell, Stages()).update(stage, i, total)
        new_cell, self.current = cell != self.current, cell
        if self.bar is not None and (new_cell or time.monotonic() - self._last_postfix >= 0.2):
            self._postfix()  # at most five times a second, and whenever another cell reports
        self._emit("inner", cell=cell, stage=stage, stage_i=i, stage_total=total)

    def cell_done(self, cell, rec: dict) -> None:
        self.done += 1
        self.finished.add(cell)
        self.stages.pop(cell, None)
        if self.show:
            self._line(record_line(rec, self.done + self.failed, self.total, time.perf_counter() - self.t0))
        self._advance(cell)
        self._emit("done", cell=cell, record=rec)

    def cell_failed(self, cell, error: str) -> None:
        self.failed += 1
        self.finished.add(cell)
        self.stages.pop(cell, None)
        if self.show:
            self._line(f"[{self.done + self.failed}/{self.total}] {cell_label(cell)}: FAILED: {error}")
        self._advance(cell)
        self._emit("failed", cell=cell, error=error)

    def _advance(self, cell) -> None:
        """One more cell on the bar, which then shows another running cell's stages (if any)."""
        if self.bar is None:
            return
        if self.current == cell:
            self.current = next(iter(self.stages), None)
        self._postfix(refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.current = None
            self._postfix()
            self.bar.close()
            self.bar = None
        self._emit("end")
