"""The one error hierarchy of edgekd; the CLI maps each class to an exit code."""

from __future__ import annotations


class EdgekdError(Exception):
    """Base of every error edgekd raises on purpose. Its message says what failed and how to fix it."""

    exit_code = 2


class ConfigError(EdgekdError):
    """A recipe, an override or a budget is invalid."""


class DataError(EdgekdError):
    """A dataset is missing, empty, malformed, or does not fit its task."""


class BundleError(EdgekdError):
    """A bundle directory is missing, incomplete, altered, or of an unknown schema."""


class UnsupportedError(EdgekdError):
    """A valid request that this model, format or backend cannot do."""


class ParityError(EdgekdError):
    """An exported or quantized model disagrees with its parent beyond tolerance."""

    exit_code = 1


class GateFailure(EdgekdError):
    """A benchmark report misses its budget."""

    exit_code = 1


class Terminated(BaseException):
    """SIGTERM arrived: raised where the process is, so that `with` blocks and `finally` clauses remove what they
    made (temporary folders, partial bundles) before it exits. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` handler swallows it."""


# What to do about the OSErrors a user meets: by errno name.
_OS_HINTS = {
    "ENOSPC": "the disk is full: free some space or write the output to another disk",
    "EDQUOT": "the disk quota is used up: free some space or write the output elsewhere",
    "EFBIG": "the file is larger than this system lets a process write (see `ulimit -f`)",
    "EACCES": "check the permissions of the file and its folder, or choose another path",
    "EPERM": "check the permissions of the file and its folder, or choose another path",
    "EROFS": "the file system is read-only: choose a path on a writable one",
    "ENOTDIR": "a part of the path is a file, not a folder",
    "EISDIR": "it is a folder where a file is expected",
    "ENOENT": "check the path",
    "EMFILE": "too many files are open: raise `ulimit -n`",
    "ENAMETOOLONG": "the name is longer than the file system allows",
}


def describe_os_error(exc: OSError, operation: str) -> str:
    """One line for an OSError that no stage turned into an EdgekdError: the file(s), what the OS said, what to do.
    `operation` says where edgekd was (e.g. `in edgekd.archive.pack`)."""
    import errno as errno_names

    name = errno_names.errorcode.get(exc.errno or 0, "")
    files = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    what = exc.strerror or str(exc) or type(exc).__name__
    hint = _OS_HINTS.get(name)
    return (f"{files + ': ' if files else ''}{what}{f' [{name}]' if name else ''} {operation}"
            + (f"; {hint}" if hint else ""))
