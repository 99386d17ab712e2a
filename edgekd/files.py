"""Reading small files that users hand edgekd (recipes, budgets, model configs) without trusting their size."""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import EdgekdError


def read_at_most(path: Path, limit: int, error: type[EdgekdError], what: str) -> bytes:
    """The bytes of `path`, read up to one byte past `limit` rather than by the size on disk (a FIFO, a file still
    growing); an unreadable file or one larger than `limit` is `error` naming it as `what`."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(limit + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise error(f"{path}: larger than {limit:,} bytes{f' ({limit >> 20} MiB)' if limit % (1 << 20) == 0 else ''}, the "
                    f"most a {what} may be; is this the right file?")
    return data
