"""Progress of long work, designed once: a tqdm bar on a terminal; elsewhere (a CI log, a file, a pipe) a few log lines,
one per tenth of the work at most and `LOG_SECONDS` apart at least; nothing when turned off (`edgekd -q`).

    with bar(len(examples), "export: parity with the parent", unit="ex") as progress:
        for batch in batches:
            ...
            progress.update(len(batch))

    with step("export: converting to TFLite"):    # one opaque call: its elapsed time ticks (a start and an end line off a terminal)
        convert()
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sized
from contextlib import contextmanager
from typing import Any, Protocol, Self, TypeVar

logger = logging.getLogger(__name__)

# Off a terminal: a line when a tenth more of the work is done and at least this many seconds passed since the last.
LOG_FRACTION = 0.1
LOG_SECONDS = 10.0
# A bar shorter than this writes no closing line off a terminal (its step's own result line says enough).
QUIET_SECONDS = 2.0
# How often a step's elapsed time is redrawn on a terminal.
TICK_SECONDS = 1.0

_enabled = True
# The clock of the log lines (a test sets another).
_now: Callable[[], float] = time.monotonic

T = TypeVar("T", bound=Sized)
R = TypeVar("R")


class Progress(Protocol):
    def update(self, n: int = 1) -> None: ...

    def set_postfix(self, **values: Any) -> None: ...

    def close(self) -> None: ...


def enable(on: bool) -> None:
    """Turn every bar and step display on or off for this process (`edgekd -q` turns them off)."""
    global _enabled
    _enabled = on


def on_terminal() -> bool:
    """Whether stderr is a terminal (a bar can redraw itself in place)."""
    stream = sys.stderr
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def bars_shown() -> bool:
    """Whether bars are drawn (on a terminal, not turned off): a library's own bars may show then, and only then."""
    return _enabled and on_terminal()


class _Off:
    """A bar that shows nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _LogBar:
    """A bar off a terminal: log lines (see the module's docstring), and a closing line when the work took a while."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int, clock: Callable[[], float]) -> None:
        self.total, self.desc, self.unit, self.n, self.clock = total, desc, unit, initial, clock
        self.initial = initial
        self.started = self.last_time = clock()
        self.last_n = initial
        self.postfix = ""
        self.lines = 0
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last_time < LOG_SECONDS:
            return
        if self.total and self.n < self.total and self.n - self.last_n < LOG_FRACTION * self.total:
            return
        self._log(now)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        now = self.clock()
        if (self.lines or now - self.started >= QUIET_SECONDS) and (self.n != self.last_n or not self.lines):
            self._log(now)

    def _log(self, now: float) -> None:
        from tqdm import tqdm

        self.last_time, self.last_n = now, self.n
        self.lines += 1
        elapsed = now - self.started
        if self.total:
            done = f"{self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%)"
            rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
            left = f", about {tqdm.format_interval((self.total - self.n) / rate)} left" if rate > 0 and self.n < self.total else ""
        else:
            done, left = f"{self.n} {self.unit}", ""
        logger.info("%s: %s in %s%s%s", self.desc, done, tqdm.format_interval(elapsed), left, f" ({self.postfix})" if self.postfix else "")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bar(total: int | None, desc: str, *, unit: str = "it", initial: int = 0, disable: bool = False) -> Any:
    """A progress display for `total` units of work (None: unknown), used as a context manager or closed by hand:
    `update(n)`, `set_postfix(key=value)`, `close()`. A tqdm bar on a terminal, which goes away when closed (the verb
    prints its result); log lines elsewhere; nothing when `disable` (a data-parallel worker) or turned off."""
    if disable or not _enabled:
        return _Off()
    if on_terminal():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=False, dynamic_ncols=True, file=sys.stderr)
    return _LogBar(total, desc, unit, initial, _now)


def counted(run: Callable[[T], R], progress: Progress) -> Callable[[T], R]:
    """`run` (a runner of a batch of examples) that advances `progress` by each batch's size once it is done."""

    def counting(batch: T) -> R:
        result = run(batch)
        progress.update(len(batch))
        return result

    return counting


@contextmanager
def step(desc: str) -> Iterator[None]:
    """One long call that reports no progress of its own: on a terminal its elapsed time ticks on one line (gone when
    it ends); elsewhere a line when it starts and one with its duration when it ends."""
    if not _enabled:
        yield
        return
    started = _now()
    if not on_terminal():
        logger.info("%s ...", desc)
        yield
        from tqdm import tqdm

        logger.info("%s: done in %s", desc, tqdm.format_interval(_now() - started))
        return
    from tqdm import tqdm

    display = tqdm(total=None, desc=desc, bar_format="{desc}: {elapsed}", leave=False, file=sys.stderr)
    done = threading.Event()

    def tick() -> None:
        while not done.wait(TICK_SECONDS):
            display.refresh()

    ticker = threading.Thread(target=tick, name="edgekd-progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        display.close()
