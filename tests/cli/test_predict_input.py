"""`edgekd predict` reads what it is given exactly: lines end at `\n` only, texts after `--` are texts, bytes are
decoded strictly, and input is streamed (answers come while the input is still being written)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.bundle import Bundle
from edgekd.cli import main


@pytest.fixture(scope="module")
def bundle(untrained_onnx: dict[str, Bundle]) -> str:
    return str(untrained_onnx["tinybert-single"].path)


def _predict(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, object]], str]:
    capsys.readouterr()
    code = main(["predict", *argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.split("\n") if line], err


def test_lines_end_at_newline_only(bundle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Two lines whose texts hold every character str.splitlines() would also split at.
    first = "a\u2028line\x85with\x0cbreaks\x1cinside\x1d\x1e\x0b"
    texts = tmp_path / "texts.txt"
    texts.write_bytes(f"{first}\r\nsecond text\n".encode())
    code, rows, err = _predict(capsys, bundle, "--input", str(texts))
    assert code == 0, err
    assert [row["text"] for row in rows] == [first, "second text"]  # one prediction per line


def test_texts_after_double_dash_are_texts(bundle: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, rows, err = _predict(capsys, bundle, "--", "rating=5 stars", "--threads")
    assert code == 0, err
    assert [row["text"] for row in rows] == ["rating=5 stars", "--threads"]
    # predict takes no overrides, so a text shaped like one is a text without `--` too.
    code, rows, err = _predict(capsys, bundle, "rating=5 stars")
    assert code == 0 and rows[0]["text"] == "rating=5 stars", err


def test_bytes_that_are_not_utf8(bundle: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"fine\n\xff\xfe bad\n")))
    code, _, err = _predict(capsys, bundle, "--input", "-")
    assert code == 2 and "--input - line 2: not UTF-8 text" in err and "Traceback" not in err
    # Python hands undecodable argv bytes over as lone surrogates (surrogateescape).
    code, _, err = _predict(capsys, bundle, "good", b"caf\xe9".decode("utf-8", "surrogateescape"))
    assert code == 2 and "text 2 on the command line is not UTF-8" in err and "Traceback" not in err


def test_closed_stdin_a_folder_and_empty_texts(bundle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sys, "stdin", None)  # what Python sets when the process starts with stdin closed (`<&-`)
    code, _, err = _predict(capsys, bundle, "--input", "-")
    assert code == 2 and "standard input is closed" in err
    code, _, err = _predict(capsys, bundle, "--input", str(tmp_path))
    assert code == 2 and "is a folder" in err
    texts = tmp_path / "texts.txt"
    texts.write_text("good\n\n   \n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        code, rows, err = _predict(capsys, bundle, "--input", str(texts))
    assert code == 0 and len(rows) == 3
    assert [r.getMessage() for r in caplog.records if "the text is empty" in r.getMessage()] == [
        f"--input {texts} line 2: the text is empty; classified anyway (the model sees only special tokens)",
        f"--input {texts} line 3: the text is empty; classified anyway (the model sees only special tokens)"]


def test_input_is_streamed(bundle: str) -> None:
    """The first answer comes while stdin is still open: nothing waits for the end of the input."""
    child = subprocess.Popen([sys.executable, "-m", "edgekd.cli", "-q", "predict", bundle, "--input", "-", "--batch-size", "1"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("a good film\n")
        child.stdin.flush()
        first = json.loads(child.stdout.readline())  # would block forever if predict read to the end first
        assert first["text"] == "a good film"
        child.stdin.write("a bad film\n")
        child.stdin.close()
        assert json.loads(child.stdout.readline())["text"] == "a bad film"
        assert child.wait(timeout=60) == 0
    finally:
        child.kill()
