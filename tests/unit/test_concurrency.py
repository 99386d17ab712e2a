"""One Classifier shared by 8 threads: exactly the serial results over 10,000 predictions, and a resident set that
stays flat from the 1,000th prediction to the 10,000th (measured in a child process of its own)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edgekd import testing
from edgekd.bundle import Bundle
from edgekd.runtime.classifier import Classifier, Prediction

THREADS = 8
PREDICTIONS = 10_000
WARM = 1_000
# 9,000 predictions between the two readings: a leak of 1 KiB each would add 8.8 MiB. The bound is well under that
# (a leak of about 0.45 KiB per prediction breaks it) and several times what the allocators' step growth was measured
# at without a leak (under 1 MiB from 1,000 to 10,000 predictions, flat from there to 200,000).
GROWTH_BOUND_MIB = 4.0

EXTRA_WORDS = ["actors", "scenes", "dialogue", "music", "ending", "director", "script", "camera", "performances", "Paris",
               "summer", "never", "again", "really", "quite", "too", "long", "short", "funny", "dark", "café", "naïve"]
PUNCTUATION = [".", "!", "?", ",", "...", " -", ";"]


def sentences(count: int, seed: int = 0) -> list[str]:
    """Deterministic sentences that look like reviews: 0 to 40 words, capitals and punctuation, now and then an
    accent, an emoji or a text past every max_length (300 words)."""
    rng = random.Random(seed)
    vocabulary = testing.POSITIVE + testing.NEGATIVE + testing.FILLER + EXTRA_WORDS
    out = []
    for number in range(count):
        size = 300 if number % 97 == 13 else 0 if number % 89 == 7 else rng.randint(1, 40)
        words = [rng.choice(vocabulary) for _ in range(size)]
        if words:
            words[0] = words[0].capitalize()
            if rng.random() < 0.1:
                words.insert(rng.randrange(len(words)), rng.choice(["😀", "👍🏽", "—", "l'été", "10/10"]))
        text = " ".join(words) + (rng.choice(PUNCTUATION) if words else "")
        out.append(text)
    return out


def inputs(kind: str, count: int) -> list[tuple[str, ...]]:
    """`count` inputs of a model's kind: single sentences, or pairs of them."""
    first = sentences(count, seed=1)
    if kind == "single":
        return [(text,) for text in first]
    return list(zip(first, sentences(count, seed=2)))


def _calls(pool: int) -> list[tuple[int, int]]:
    """The (start, size) of each predict call: one to three consecutive inputs of the pool, cycling through it."""
    return [(call % pool, 1 + (call // pool) % 3) for call in range(PREDICTIONS)]


@pytest.mark.parametrize("name", ["tinybert-single", "tinybert-pair", "bilstm-single", "bilstm-pair"])
def test_one_classifier_shared_by_8_threads_gives_the_serial_results(untrained_onnx: dict[str, Bundle], name: str) -> None:
    classifier = Classifier.load(untrained_onnx[name].path)
    texts = inputs(untrained_onnx[name].manifest.task.kind, 500)
    calls = _calls(len(texts))
    serial = {call: classifier.predict(texts[call[0] : call[0] + call[1]]) for call in dict.fromkeys(calls)}
    results: list[list[Prediction] | None] = [None] * len(calls)
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(worker: int) -> None:
        try:
            start.wait()  # all threads predict at once, not one after another as they are started
            for number in range(worker, len(calls), THREADS):
                first, size = calls[number]
                results[number] = classifier.predict(texts[first : first + size])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    mismatches = []
    for call, got in zip(calls, results):
        expected = serial[call]
        assert got is not None and len(got) == len(expected)
        for one, other in zip(got, expected):
            close = all(abs(one.probabilities[label] - other.probabilities[label]) <= 1e-6 for label in classifier.labels)
            if one.label != other.label or not close:
                mismatches.append((call, one, other))
    assert not mismatches, f"{len(mismatches)} of {len(calls)} threaded predictions differ from the serial ones: {mismatches[:3]}"


CHILD = r"""
import json, os, resource, sys, threading
from edgekd.runtime.classifier import Classifier
from edgekd.runtime.latency import peak_rss_kb

def current_mib():  # resident set now (the second field of /proc/self/statm, in pages)
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

def peak_mib():  # this process image's peak resident set (VmHWM)
    return peak_rss_kb() / 1024

def maxrss_mib():  # getrusage's peak (KiB on Linux); see the test for why it is not the peak alone
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def reading():
    return {"current_mib": current_mib(), "peak_mib": peak_mib(), "maxrss_mib": maxrss_mib()}

bundle, texts_file, threads, warm, total = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
texts = [tuple(t) for t in json.loads(open(texts_file, encoding="utf-8").read())]
classifier = Classifier.load(bundle)
errors = []

def work(numbers):
    try:
        for number in numbers:
            classifier.predict([texts[number % len(texts)]])
    except BaseException as exc:
        errors.append(repr(exc))

def predict(start, stop):  # predictions start..stop-1, spread over the threads
    workers = [threading.Thread(target=work, args=(range(start + k, stop, threads),)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

predict(0, warm)
at_warm = reading()
predict(warm, total)
at_total = reading()
print(json.dumps({"warm": at_warm, "total": at_total, "errors": errors[:3]}))
"""


@pytest.mark.parametrize("name", ["tinybert-pair", "bilstm-single"])
def test_memory_stays_flat_over_10000_threaded_predictions(untrained_onnx: dict[str, Bundle], name: str, tmp_path: Path) -> None:
    # 500 distinct inputs, every length among them: the first 1,000 predictions meet each input twice, so the
    # allocators (glibc's per-thread arenas, ONNX Runtime's) have reached every shape before the first reading.
    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps(inputs(untrained_onnx[name].manifest.task.kind, 500)), encoding="utf-8")
    command = [sys.executable, "-c", CHILD, str(untrained_onnx[name].path), str(texts_file), str(THREADS), str(WARM), str(PREDICTIONS)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert not report["errors"], report["errors"]
    warm, total = report["warm"], report["total"]
    growth = {key: total[key] - warm[key] for key in warm}
    print(
        f"\n{name}: after {WARM:,} predictions: resident {warm['current_mib']:.1f} MiB, peak (VmHWM) {warm['peak_mib']:.1f} MiB, "
        f"ru_maxrss {warm['maxrss_mib']:.1f} MiB; after {PREDICTIONS:,}: resident {total['current_mib']:.1f} MiB, peak "
        f"{total['peak_mib']:.1f} MiB, ru_maxrss {total['maxrss_mib']:.1f} MiB; growth {growth['current_mib']:+.2f} / "
        f"{growth['peak_mib']:+.2f} / {growth['maxrss_mib']:+.2f} MiB"
    )
    # ru_maxrss keeps, across exec, the resident set of the process that forked the child (this pytest, torch and all,
    # hundreds of MiB), so it rarely moves; VmHWM is the child's own peak and the current resident set shows a leak
    # at once. All three must stay within the bound.
    assert all(value < GROWTH_BOUND_MIB for value in growth.values()), (warm, total)
