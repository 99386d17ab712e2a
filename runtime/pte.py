"""An ExecuTorch program (`.pte`, XNNPACK delegate) through ExecuTorch's Python runtime: one method per sequence bucket.

ExecuTorch's Python bindings take torch tensors, so this backend (and only this one) needs torch on the machine that
runs it; an app runs the same file through ExecuTorch's C++ runtime (its Kotlin and Swift bindings) without torch.
A file ExecuTorch cannot load, or one without seq<N> methods, is a BundleError before any run.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgekd.errors import BundleError
from edgekd.logs import native_stderr_filtered

from .backends import (
    BACKEND_MODULES,
    BUCKET_SIGNATURE,
    backend_failure,
    import_backend,
    run_in_buckets,
    smallest_bucket,
)
from .encoder import Example


class PteBackend:
    """The program's seq<N> methods, loaded once; examples run one by one, padded to the smallest bucket that holds them.

    `input_names` is the methods' positional input order (a `.pte` method has no input names): the manifest's inputs.
    XNNPACK's kernels run on ExecuTorch's one thread pool per process, which starts with a thread per core: it is reset
    to `threads` here (the benchmark protocol's explicit thread count), for every program the process runs.
    """

    def __init__(self, path: Path, pad_id: int, input_names: Sequence[str], threads: int = 1) -> None:
        runtime = import_backend(BACKEND_MODULES["executorch"], path)
        import torch  # ExecuTorch's bindings take torch tensors (see the module's note)

        self._torch = torch
        _set_threads(threads)
        try:
            with native_stderr_filtered():
                program = runtime.Runtime.get().load_program(Path(path))
                names = sorted(program.method_names)
                methods = {int(m.group(1)): program.load_method(n) for n in names if (m := BUCKET_SIGNATURE.match(n))}
        except (RuntimeError, ValueError) as exc:
            raise BundleError(f"{path}: ExecuTorch cannot load it as a program ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from None
        if not methods:
            raise BundleError(f"{path}: no seq<N> methods (found {names}); export it with `edgekd export --to executorch`")
        arity = {m.metadata.num_inputs() for m in methods.values()}
        if arity != {len(input_names)}:
            raise BundleError(f"{path}: its methods take {sorted(arity)} inputs, but the manifest lists {list(input_names)}; "
                              "re-create the bundle with `edgekd export --to executorch`")
        self._methods = dict(sorted(methods.items()))
        self.buckets = list(self._methods)
        self.input_names, self.pad_id, self.path, self.max_sequence, self.threads = tuple(input_names), pad_id, path, max(self.buckets), threads
        # A loaded method holds its planned memory: one call at a time.
        self._lock = threading.Lock()

    def bucket(self, length: int) -> int:
        return smallest_bucket(self.buckets, length, "ExecuTorch")

    def run(self, examples: list[Example]) -> np.ndarray:
        return run_in_buckets(examples, self.pad_id, self.bucket, self._invoke)

    def _invoke(self, size: int, feeds: dict[str, np.ndarray]) -> np.ndarray:
        args = [self._torch.from_numpy(feeds[name]) for name in self.input_names]
        try:
            with self._lock:
                (logits,) = self._methods[size].execute(args)
        except RuntimeError as exc:  # a failed kernel (an id past the embedding table) comes back as RuntimeError
            raise backend_failure(self.path, "ExecuTorch", exc, {n: list(feeds[n].shape) for n in self.input_names}) from None
        return logits.numpy()


def _set_threads(threads: int) -> None:
    """Resize ExecuTorch's process-wide thread pool. Its Python bindings expose this only as `_unsafe_reset_threadpool`
    (unsafe while another thread runs a program; a Classifier is loaded before it runs)."""
    from executorch.extension.pybindings import portable_lib

    # The pool is made on first use, probing the CPU, and announces a reset: both from C++, on stderr.
    with native_stderr_filtered():
        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)
