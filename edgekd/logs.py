"""Logging helpers: what the CLI shows of its own logs and of the libraries under it.

By default the CLI shows edgekd's logs (INFO) and of the libraries under it only errors: their INFO and WARNING
records (jax's lowering notes and TPU probe, torch's `_pytree` notices, torchao's missing kernels, onnxruntime's
advice), the Python warnings they raise, and the lines LiteRT's C++ code writes straight to stderr. `--verbose` shows
all of it; `-q` keeps only edgekd's warnings and errors (and no progress bars).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

# The loggers (and modules) that are edgekd's own; the rest are third parties.
OWN = "edgekd"
Verbosity = Literal["quiet", "normal", "verbose", "debug"]
# Lines that C/C++ libraries write to file descriptor 2 themselves, which no Python setting reaches.
# ExecuTorch's runtime probes the CPU when its thread pool is made and logs each step ("[cpuinfo_utils.cpp:71] ..."),
# and announces a resized pool ("[threadpool.cpp:66] Resetting threadpool to 1 threads.").
NATIVE_NOISE = re.compile(r"Created TensorFlow Lite XNNPACK delegate|All log messages before absl::InitializeLog\(\)|^\[(cpuinfo_utils|threadpool)\.cpp:\d+\]")

_show_third_party = False


def is_own(name: str) -> bool:
    return name == OWN or name.startswith(OWN + ".")


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


def _own_or_error(record: logging.LogRecord) -> bool:
    """A handler filter: edgekd's records, and third parties' errors."""
    return is_own(record.name) or record.levelno >= logging.ERROR


class _BarAwareHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """On a terminal, a log line is written above the progress bars (tqdm clears and redraws them)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging's own convention: report, never raise from a handler
            self.handleError(record)


def setup_cli(verbosity: Verbosity) -> None:
    """Configure logging, warnings, progress and third-party chatter for one `edgekd` process (see the module)."""
    from edgekd import progress

    global _show_third_party
    _show_third_party = verbosity in ("verbose", "debug")
    level = {"quiet": logging.WARNING, "normal": logging.INFO, "verbose": logging.INFO, "debug": logging.DEBUG}[verbosity]
    handler: logging.Handler = _BarAwareHandler(sys.stderr) if progress.on_terminal() else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if not _show_third_party:
        handler.addFilter(_own_or_error)
    root = logging.getLogger()
    for ours in [h for h in root.handlers if getattr(h, OWN, False)]:  # an earlier call's, in the same process
        root.removeHandler(ours)
    if not root.handlers:  # as logging.basicConfig: an application (or pytest) that configured logging keeps its own
        setattr(handler, OWN, True)
        root.addHandler(handler)
        root.setLevel(level)
    progress.enable(verbosity != "quiet")
    if verbosity == "debug":
        return
    # Libraries whose INFO is a flood even in --verbose; their warnings stay visible there.
    for name in ("datasets", "urllib3", "filelock", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if _show_third_party:
        return
    # Read when each library is imported (later, inside the verbs): torch's own handler (its `_pytree` notices) to
    # errors only, transformers' logger (it resets its level on import), TensorFlow's C++ logs.
    os.environ.setdefault("TORCH_LOGS", "-all")
    if "torch" in sys.modules:  # imported already (edgekd called from Python): its logger is set up, set its level
        logging.getLogger("torch").setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if verbosity == "quiet" or not progress.on_terminal():
        # Hugging Face's own bars redraw with carriage returns: hundreds of lines in a CI log.
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if not sys.warnoptions:  # a -W option or PYTHONWARNINGS is the user's choice
        warnings.filterwarnings("ignore")
        warnings.filterwarnings("default", module=rf"{OWN}(\.|$)")


@contextmanager
def native_stderr_filtered(noise: re.Pattern[str] = NATIVE_NOISE) -> Iterator[None]:
    """While the block runs, file descriptor 2 goes to a temporary file; when it ends, what was written there is
    written back to stderr without the lines `noise` matches (unless third-party output is shown: `--verbose`).

    For short native calls that announce themselves from C++ (LiteRT's "Created TensorFlow Lite XNNPACK delegate for
    CPU.", written once per process when the first interpreter allocates its tensors), which neither logging nor
    sys.stderr sees. Anything else written meanwhile, by any thread, comes out in order, after the block."""
    if _show_third_party:
        yield
        return
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to filter
        yield
        return
    try:
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                with contextlib.suppress(AttributeError, ValueError, OSError):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                capture.seek(0)
                kept = [line for line in capture.read().splitlines(keepends=True) if not noise.search(line.decode("utf-8", "replace"))]
                if kept:
                    with contextlib.suppress(OSError):
                        os.write(2, b"".join(kept))
    finally:
        os.close(saved)
