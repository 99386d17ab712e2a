"""Errors a user reads: a validation error rendered as one line per problem (where, what, the nearest valid key),
and the user's values repeated in them, bounded however large the value."""

from __future__ import annotations

import difflib
import reprlib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from edgekd.errors import ConfigError

from .base import ConfigT

# The most characters of a user's value (or key) that an error message repeats.
SHOWN_CHARS = 200
# The most problems one ConfigError lists.
MAX_PROBLEMS = 30


def validate_config(model: type[ConfigT], raw: Any, *, source: str) -> ConfigT:
    """Validate a mapping into a config model (a recipe, a budget); all problems in one ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values at the top level, found {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        # Each line repeats at most a few hundred characters of the user's keys and values, and a document with
        # thousands of problems (a list of bad entries) is not listed in full.
        lines = [_clip(_describe(err, model), 1_000) for err in errors[:MAX_PROBLEMS]]
        more = f"\n  - ... and {len(errors) - MAX_PROBLEMS} more" if len(errors) > MAX_PROBLEMS else ""
        raise ConfigError(f"{source}: {len(errors)} problem(s):\n" + "\n".join(f"  - {line}" for line in lines) + more) from None


def _describe(err: Any, root: type[BaseModel]) -> str:
    model, path = _walk(root, [_clip(str(p), 80) for p in err["loc"]])
    where = ".".join(path) or "(top level)"
    if err["type"] == "extra_forbidden":
        valid = list(model.model_fields) if model is not None else []
        close = nearest_key(path[-1], valid)
        hint = f"did you mean {close!r}? " if close else ""
        return f"{where}: unknown key; {hint}valid keys here: {', '.join(valid)}"
    if err["type"] == "missing":
        return f"{where}: required key is missing"
    if err["type"] == "value_error":
        message = err["msg"].removeprefix("Value error, ")
        return message if not path or message.startswith(path[0]) else f"{where}: {message}"
    given = err.get("input")
    shown = "" if isinstance(given, dict) else f" (got {_shown(given)})"
    return f"{where}: {err['msg']}{shown}"


def _shown(value: Any) -> str:
    """The repr of an offending value, at most SHOWN_CHARS characters however large or deep the value is; one holding
    an integer past Python's 4,300-digit str limit (a YAML hex literal can be that long) is described instead, since
    repr() raises ValueError on it."""
    try:
        return _clip(_REPR.repr(value))
    except ValueError:
        return f"a {type(value).__name__} holding an integer of more than 4,300 digits"


def _clip(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text`, cut after `limit` characters with a note of how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def shorten(value: Any, limit: int = SHOWN_CHARS) -> str:
    """A user's value as an error message may repeat it: a string as is, anything else as its repr, at most `limit`
    characters (a key in a budget, a name in a report)."""
    return _clip(value, limit) if isinstance(value, str) else _clip(_shown(value), limit)


def _bounded_repr() -> reprlib.Repr:
    """reprlib's repr, which walks only what it shows: a few levels, a few items, short strings."""
    bounded = reprlib.Repr()
    bounded.maxlevel, bounded.maxlist, bounded.maxtuple, bounded.maxdict, bounded.maxset = 3, 8, 8, 6, 8
    bounded.maxstring, bounded.maxother, bounded.maxlong = SHOWN_CHARS, SHOWN_CHARS, 60
    return bounded


_REPR = _bounded_repr()


def _walk(model: type[BaseModel], loc: list[str]) -> tuple[type[BaseModel] | None, list[str]]:
    """Follow an error location through the models. Returns the model holding the last key, and the location as the
    user wrote it (pydantic inserts the tag of a tagged union, which is not a key of the recipe)."""
    current: type[BaseModel] | None = model
    path: list[str] = []
    i = 0
    while i < len(loc):
        part = loc[i]
        path.append(part)
        i += 1
        if i == len(loc) or current is None:
            break
        field = current.model_fields.get(part)
        annotation = field.annotation if field else None
        if typing.get_origin(annotation) in (dict, list):  # students.<name>, stages.<index>
            annotation = typing.get_args(annotation)[-1]
            path.append(loc[i])
            i += 1
        choices = _models_in(annotation)
        if len(choices) > 1 and i < len(loc):
            tags = {typing.get_args(c.model_fields[tag].annotation)[0]: c for c in choices for tag in ("type", "method") if tag in c.model_fields}
            if loc[i] in tags:
                current = tags[loc[i]]
                i += 1
                continue
        current = choices[0] if len(choices) == 1 else None
    return current, path


def nearest_key(key: str, valid: list[str]) -> str | None:
    """The valid key closest to a mistyped one: by spelling, or by initials (`lr` for `learning_rate`)."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if close:
        return close[0]
    initials = [v for v in valid if "_" in v and "".join(part[0] for part in v.split("_")) == key.lower()]
    return initials[0] if initials else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (typing.Union, typing.Annotated):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []
