"""Logging helpers: some backends log through the root logger, which would otherwise print every step."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def root_filter(drop: Callable[[logging.LogRecord], bool]) -> Iterator[None]:
    """Drop records logged directly on the root logger that `drop` selects; records of named loggers (ours) pass,
    because a logger's filters see only the records created on it."""

    def keep(record: logging.LogRecord) -> bool:
        return not drop(record)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)
