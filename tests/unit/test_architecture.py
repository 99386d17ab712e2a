"""The dependency rules of DESIGN.md hold: import-linter's contracts (pyproject.toml `[tool.importlinter]`) pass over
the installed `edgekd` package, and each contract breaks when a forbidden import is added to a copy of the tree.

The stage folders sit at the top of the repository and install as subpackages of `edgekd` (setuptools `package-dir`).
The checkout lays them out the installed way too, with links `edgekd/<stage> -> ../<stage>`, so `lint-imports` run
from the repository root scans what an install holds (an editable install maps the stages with an import hook, which
import-linter's file scanner does not see). The forbidden-import checks edit a copy laid out as `pip install` lays it
out. `python tests/unit/test_architecture.py` prints the report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"


def _pyproject() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def _not_python(folder: str, names: list[str]) -> set[str]:
    # The checkout's links to the stage folders are skipped: each stage is copied from its own folder (package-dir).
    return {n for n in names if n == "__pycache__" or Path(folder, n).is_symlink() or (not n.endswith(".py") and not Path(folder, n).is_dir())}


def installed_layout(target: Path) -> Path:
    """Copy the sources into `target` as installed: `distill/` as `edgekd/distill/`, and so on (package-dir)."""
    package_dir: dict[str, str] = _pyproject()["tool"]["setuptools"]["package-dir"]
    # Parents before children (`edgekd` before `edgekd.distill`), so a child's copy lands inside its parent's.
    for package, source in sorted(package_dir.items()):
        shutil.copytree(ROOT / source, target.joinpath(*package.split(".")), ignore=_not_python, dirs_exist_ok=True)
    return target


def lint_imports(layout: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """Run `lint-imports` with the project's contracts over `layout` (only `contracts`, by id, when given)."""
    script = Path(sys.executable).with_name("lint-imports")
    command = [str(script)] if script.exists() else [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"]
    for contract in contracts:
        command += ["--contract", contract]
    # The layout comes first on the path: the editable install's import hook only answers what the path does not.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(layout), os.environ.get("PYTHONPATH")])), "COLUMNS": "200"}
    return subprocess.run(
        [*command, "--config", str(PYPROJECT), "--no-cache", "--no-logo"],
        cwd=layout, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def contract_ids() -> set[str]:
    return {contract["id"] for contract in _pyproject()["tool"]["importlinter"]["contracts"]}


def test_contracts_pass(tmp_path: Path) -> None:
    result = lint_imports(installed_layout(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contract_ids())} kept, 0 broken." in result.stdout, result.stdout


def test_the_checkout_links_every_stage_folder_where_it_installs() -> None:
    # What makes a bare `lint-imports` in the repository root see the installed package.
    package_dir: dict[str, str] = _pyproject()["tool"]["setuptools"]["package-dir"]
    for package, source in package_dir.items():
        if package != "edgekd":
            link = ROOT.joinpath(*package.split("."))
            assert link.is_symlink() and link.resolve() == (ROOT / source).resolve(), f"{link} should link to ../{source}"


def test_contracts_pass_in_the_checkout_as_a_user_runs_them() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contract_ids())} kept, 0 broken." in result.stdout, result.stdout


def test_contracts_do_not_depend_on_the_data_only_recipes_package(tmp_path: Path) -> None:
    # `edgekd.recipes` holds YAML and an empty __init__: an install (or a scan) that does not list it as a module must
    # not break the layers contract ("Missing layer in container 'edgekd': module edgekd.recipes does not exist").
    layout = installed_layout(tmp_path)
    shutil.rmtree(layout / "edgekd" / "recipes")
    result = lint_imports(layout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contract_ids())} kept, 0 broken." in result.stdout, result.stdout


# (contract that must break, file of the installed layout, the forbidden import appended to it)
FORBIDDEN = {
    "runtime imports torch": ("runtime-light", "edgekd/runtime/encoder.py", "import torch"),
    "runtime imports transformers": ("runtime-light", "edgekd/runtime/classifier.py", "from transformers import AutoTokenizer"),
    "runtime reaches torch through the spine": ("runtime-light", "edgekd/runtime/golden.py", "from edgekd.modeling import load_torch_model"),
    "runtime imports a stage": ("layers", "edgekd/runtime/backends.py", "from edgekd.export import stage"),
    "quantize imports export's internals": ("layers", "edgekd/quantize/onnx.py", "from edgekd.export.base import Source"),
    "a spine module imports a stage": ("layers", "edgekd/hashing.py", "import edgekd.benchmarks.stats"),
    "a new spine module placed in no layer": ("layers", "edgekd/unplaced.py", "from edgekd.errors import EdgekdError"),
    "export imports distill": ("distill-protected", "edgekd/export/base.py", "from edgekd.distill import losses"),
    "distill uses the runtime beyond its word tokenizer": ("distill-runtime", "edgekd/distill/losses.py", "from edgekd.runtime import classifier"),
}


def test_every_contract_has_a_forbidden_import() -> None:
    tested = {contract for contract, _, _ in FORBIDDEN.values()}
    assert tested == contract_ids(), f"contracts without a forbidden import here: {contract_ids() - tested}; unknown: {tested - contract_ids()}"


@pytest.mark.parametrize("case", sorted(FORBIDDEN))
def test_a_forbidden_import_breaks_its_contract(case: str, tmp_path: Path) -> None:
    contract, path, statement = FORBIDDEN[case]
    layout = installed_layout(tmp_path)
    module = layout / path
    module.write_text((module.read_text(encoding="utf-8") if module.exists() else "") + f"\n{statement}\n", encoding="utf-8")
    result = lint_imports(layout, contract)
    assert result.returncode == 1, f"{case}: {statement} in {path} was not caught by {contract}\n{result.stdout}{result.stderr}"
    assert "BROKEN" in result.stdout and "0 kept, 1 broken" in result.stdout, result.stdout


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        report = lint_imports(installed_layout(Path(folder)))
    print(report.stdout + report.stderr, end="")
    sys.exit(report.returncode)
