"""Which teacher layer each student layer learns from (TinyBERT's mapping function g(m))."""

from __future__ import annotations

from edgekd.errors import ConfigError

STRATEGIES = ("uniform", "top", "bottom")


def layer_map(spec: str | list[int], teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layer (1-based) for each student layer 1..M. Layer 0, the embeddings, always maps to 0.

    - uniform: g(m) = m * N / M, the paper's choice; needs N divisible by M.
    - top: the last M teacher layers; bottom: the first M.
    - an explicit list of M strictly increasing teacher layers in 1..N.
    """
    n, m = teacher_layers, student_layers
    if m < 1 or n < 1:
        raise ConfigError(f"layer map: the teacher has {n} layers and the student {m}; both need at least one")
    if m > n:
        raise ConfigError(f"layer map: the student has {m} layers but the teacher only {n}; use at most {n} student layers")
    if isinstance(spec, list):
        problems = []
        if len(spec) != m:
            problems.append(f"it has {len(spec)} entries but the student has {m} layers")
        if any(not 1 <= layer <= n for layer in spec):
            problems.append(f"every entry must be a teacher layer in 1..{n}")
        if any(b <= a for a, b in zip(spec, spec[1:])):
            problems.append("entries must be strictly increasing")
        if problems:
            raise ConfigError(f"layer map {spec}: " + "; ".join(problems))
        return list(spec)
    if spec == "uniform":
        if n % m:
            spread = [int((i + 1) * n / m + 0.5) for i in range(m)]
            raise ConfigError(
                f"layer map 'uniform' needs the teacher's {n} layers to divide evenly over the student's {m}; "
                f"use 'top', 'bottom', or an explicit list such as {spread}"
            )
        return [(i + 1) * n // m for i in range(m)]
    if spec == "top":
        return list(range(n - m + 1, n + 1))
    if spec == "bottom":
        return list(range(1, m + 1))
    raise ConfigError(f"layer map {spec!r} is unknown; valid: {', '.join(STRATEGIES)}, or a list of teacher layers")
