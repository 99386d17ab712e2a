"""Pair truncation shared by training (`edgekd.batching.encode`) and the on-device runtime (`runtime.encoder`): no
imports, so the runtime stays light."""

from __future__ import annotations


def longest_first(sequence_ids: list[int | None], room: int) -> list[int]:
    """Positions of a pair's encoding that `tokenizers`' longest_first truncation keeps (what transformers'
    `truncation=True` runs), given the pair encoded whole: every special token (sequence id None); the shorter text
    whole and the longer cut to the rest of the `room`, or, when the shorter alone does not leave the longer as much,
    half the room each (the second text gets the odd piece unless the first is longer). Linear in the length, where
    the library's own pair truncation joins every overflowing window of one text with every window of the other."""
    first, second = sequence_ids.count(0), sequence_ids.count(1)
    short, long = sorted((first, second))
    long = short if short > room else max(short, room - short)
    if short + long > room:
        short, long = room // 2, room // 2 + room % 2
    limits = (long, short) if first > second else (short, long)
    seen = [0, 0]
    keep = []
    for position, sequence in enumerate(sequence_ids):
        if sequence is None:
            keep.append(position)
        elif seen[sequence] < limits[sequence]:
            seen[sequence] += 1
            keep.append(position)
    return keep
