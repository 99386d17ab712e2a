"""The README's table of bad inputs stays true: every row names a test that exists and asserts the message shown."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXCERPT = re.compile(r"``(.+?)``|`([^`]+)`")


def bad_input_rows() -> list[tuple[str, str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Bad input, hostile files, crashes", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 3 and cells[2].startswith("`tests/"):
            match = EXCERPT.search(cells[1])
            assert match, f"no `excerpt` in {line}"
            rows.append((cells[0], match.group(1) or match.group(2), cells[2].strip("`")))
    return rows


def test_every_row_names_a_test_that_asserts_its_message() -> None:
    rows = bad_input_rows()
    assert len(rows) >= 30
    for case, excerpt, test in rows:
        path, name = test.split("::")
        source = (ROOT / path).read_text(encoding="utf-8")
        # The excerpt is in the test (decorators included) or in the module's constants and helpers, not in another test.
        lines = source.splitlines()
        own, found = [], False
        for node in ast.parse(source).body:
            start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            text = "\n".join(lines[start - 1 : node.end_lineno])
            is_test = isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
            found |= is_test and node.name == name
            if not is_test or node.name == name:
                own.append(text)
        assert found, f"{case}: {test} does not exist"
        assert any(excerpt in text for text in own), f"{case}: {test} does not assert {excerpt!r}"
