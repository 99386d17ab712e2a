"""Output safety: an output path is only ever replaced when it is an edgekd bundle; `.`, its parents, `/` and the home
directory are never outputs; one writer per output at a time; temporary folders do not outlive a failure or a kill.
Every case keeps the user's files."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from edgekd import testing
from edgekd.archive import pack
from edgekd.bundle import MANIFEST, Bundle
from edgekd.cli import main
from edgekd.config import (
    MagnitudePruneConfig,
    OnnxDynamicConfig,
    OnnxStaticConfig,
    validate_recipe,
)
from edgekd.errors import BundleError
from edgekd.testing import fake_bundle, fake_manifest_fields
from edgekd.writer import BundleWriter, check_output


def users_folder(path: Path) -> Path:
    """A folder holding a user's files (not a bundle)."""
    (path / "sub").mkdir(parents=True)
    (path / "notes.txt").write_text("notes", encoding="utf-8")
    (path / "sub" / "data.csv").write_text("a,b\n", encoding="utf-8")
    return path


def users_files_kept(path: Path) -> bool:
    return (path / "notes.txt").read_text(encoding="utf-8") == "notes" and (path / "sub" / "data.csv").is_file()


def torch_bundle(target: Path) -> Bundle:
    """A made-up bundle that says it is a torch one: enough for the stages to get as far as their output check."""
    with BundleWriter(target) as writer:
        (writer.path / "model.safetensors").write_bytes(b"x" * 64)
        (writer.path / "vocab.txt").write_text("[PAD]\n[UNK]\n")
        return writer.commit(**fake_manifest_fields(format="torch"))


# --- what may be at an output path ------------------------------------------------------------------------------

def test_a_folder_of_user_files_is_never_replaced_even_with_force(tmp_path: Path) -> None:
    out = users_folder(tmp_path / "mydata")
    for overwrite in (False, True):
        with pytest.raises(BundleError, match=r"holds 2 files or folders that are not an edgekd bundle \(notes.txt, sub/\)"):
            with BundleWriter(out, overwrite=overwrite) as writer:
                (writer.path / "model.bin").write_bytes(b"x")
                writer.commit(**fake_manifest_fields())
    assert users_files_kept(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mydata"], "no partial build or lock file is left beside it"


def test_a_bundle_holding_a_users_added_files_is_never_replaced(tmp_path: Path) -> None:
    bundle = fake_bundle(tmp_path / "b")
    (bundle.path / "my-results.md").write_text("notes", encoding="utf-8")
    with pytest.raises(BundleError, match=r"is an edgekd bundle with 1 file\(s\) its manifest does not list \(my-results.md\)"):
        check_output(bundle.path, overwrite=True)
    (bundle.path / "my-results.md").unlink()
    assert check_output(bundle.path, overwrite=True) == bundle.path


def test_a_file_a_symlink_or_a_broken_manifest_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / MANIFEST).write_text('{"not": "a manifest"}')
    cases = {"file": "is a file \\(4 bytes\\), not an edgekd bundle", "link": "is a symbolic link .*not an edgekd bundle",
             "broken": "holds a manifest.json that does not parse .*not an edgekd bundle"}
    for name, message in cases.items():
        with pytest.raises(BundleError, match=message):
            check_output(tmp_path / name, overwrite=True)
        with pytest.raises(BundleError, match=message):
            fake_bundle(tmp_path / name)
    assert (tmp_path / "file").read_text() == "keep" and (tmp_path / "link").is_symlink()
    assert (tmp_path / "broken" / MANIFEST).read_text() == '{"not": "a manifest"}'


def test_an_empty_folder_may_be_an_output_and_a_bundle_needs_force(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    first = fake_bundle(tmp_path / "empty")  # no --force needed: nothing is lost
    with pytest.raises(BundleError, match="already exists.*--force"):
        check_output(tmp_path / "empty", overwrite=False)
    assert check_output(tmp_path / "empty", overwrite=True) == tmp_path / "empty"
    assert Bundle.open(tmp_path / "empty").sha256 == first.sha256


def test_user_files_added_during_a_build_stop_the_swap(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(BundleError, match="not an edgekd bundle"):
        with BundleWriter(tmp_path / "out") as writer:
            (writer.path / "model.bin").write_bytes(b"x")
            (tmp_path / "out" / "notes.txt").write_text("written while the stage trained")
            writer.commit(**fake_manifest_fields())
    assert (tmp_path / "out" / "notes.txt").is_file() and not (tmp_path / "out" / MANIFEST).exists()


@pytest.mark.parametrize("where", [".", "..", "cwd", "home", "/"])
def test_the_current_directory_its_parents_home_and_root_are_never_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    work = tmp_path / "home" / "work"
    work.mkdir(parents=True)
    fake_bundle(work / "b")  # an empty folder or a bundle would pass the content rule: these are refused by place
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(work)
    target = {"cwd": str(work), "home": str(tmp_path / "home")}.get(where, where)
    expected = {".": "the current directory", "cwd": "the current directory", "..": "the home directory",
                "home": "the home directory", "/": "the root directory"}[where]
    with pytest.raises(BundleError, match=f"is {expected}; edgekd never writes a bundle there"):
        check_output(target, overwrite=True)
    (tmp_path / "home" / "x").mkdir()
    monkeypatch.chdir(tmp_path / "home" / "x")
    with pytest.raises(BundleError, match="a parent of the current directory"):
        check_output(tmp_path, overwrite=True)
    assert Bundle.open(work / "b")


# --- the reproductions of the issue, through the CLI ----------------------------------------------------------------

def test_run_refuses_an_output_folder_holding_a_users_files(tmp_path: Path, tiny_encoder: Path, single_task: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    recipe = testing.tiny_run_recipe(tmp_path, tiny_encoder, single_task)
    out = tmp_path / "X"
    users_folder(out / "teacher")
    started = time.perf_counter()
    assert main(["run", str(recipe), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'teacher'}: holds 2 files or folders that are not an edgekd bundle" in err, err
    assert users_files_kept(out / "teacher") and time.perf_counter() - started < 30, "refused before the teacher trained"


def test_run_refuses_the_current_directory_and_home(tmp_path: Path, tiny_encoder: Path, single_task: Path,
                                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = testing.tiny_run_recipe(tmp_path, tiny_encoder, single_task)
    home = users_folder(tmp_path / "home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home / "sub")
    for out, message in ((".", "is the current directory"), (str(home), "is the home directory"), ("..", "is the home directory")):
        assert main(["run", str(recipe), "-o", out]) == 2
        assert f"{message}; edgekd never uses it as an output folder" in capsys.readouterr().err
    assert users_files_kept(home) and not (home / "teacher").exists() and not (home / "sub" / "teacher").exists()


def test_import_into_the_current_directory_with_force_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    work = users_folder(tmp_path / "W")
    archive = pack(fake_bundle(tmp_path / "src" / "good").path, work / "good.tar.gz")
    monkeypatch.chdir(work)
    assert main(["import", "good.tar.gz", "-o", ".", "--force"]) == 2
    assert "is the current directory; edgekd never writes a bundle there" in capsys.readouterr().err
    assert users_files_kept(work) and archive.is_file()


def test_import_of_an_archive_named_dotdot_gets_no_default_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bundle = fake_bundle(tmp_path / "src" / "b")
    work = users_folder(tmp_path / "W")
    with tarfile.open(work / "..tar.gz", "w:gz") as tar:  # the manifest at the archive's root: no top folder to name it
        for name in [MANIFEST, *bundle.manifest.files]:
            data = (bundle.path / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    monkeypatch.chdir(work)
    assert main(["import", "..tar.gz", "--force"]) == 2
    assert "cannot name the imported bundle after the archive ('.' is not a folder name); give its output path with -o" in capsys.readouterr().err
    assert users_files_kept(work) and (work / "..tar.gz").is_file()


def test_quantize_with_force_onto_a_folder_of_user_files_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = fake_bundle(tmp_path / "B")  # an onnx bundle: refused at the output check, before any model is read
    mydata = users_folder(tmp_path / "mydata")
    assert main(["quantize", str(bundle.path), "--method", "onnx-dynamic", "-o", str(mydata), "--force"]) == 2
    assert f"{mydata}: holds 2 files or folders that are not an edgekd bundle (notes.txt, sub/)" in capsys.readouterr().err
    assert users_files_kept(mydata)
    assert main(["quantize", str(bundle.path), "--method", "onnx-dynamic", "-o", str(bundle.path), "--force"]) == 2
    assert "is the input bundle; a stage writes a new bundle and never replaces its input" in capsys.readouterr().err
    assert Bundle.open(bundle.path).sha256 == bundle.sha256


def test_every_stage_checks_its_output_before_it_works(tmp_path: Path, tiny_encoder: Path, single_task: Path) -> None:
    from edgekd.distill.distill import distill
    from edgekd.distill.teacher import teacher
    from edgekd.export.stage import export
    from edgekd.quantize.prune import prune
    from edgekd.quantize.stage import quantize

    from edgekd.config import ExportConfig

    onnx, torch = fake_bundle(tmp_path / "onnx"), torch_bundle(tmp_path / "torch")
    raw = testing.tiny_recipe(single_task, tiny_encoder, tmp_path / "run")
    raw["students"] = testing.tiny_students()
    recipe = validate_recipe(raw)
    mydata = users_folder(tmp_path / "mydata")
    stages = {
        "teacher": lambda: teacher(recipe, mydata, force=True),
        "distill": lambda: distill(recipe, "bilstm", mydata, force=True),  # no teacher bundle yet: refused before it is read
        "export": lambda: export(torch.path, ExportConfig(format="onnx"), mydata, force=True),
        "quantize": lambda: quantize(onnx.path, OnnxDynamicConfig(), mydata, force=True),
        "prune": lambda: prune(torch.path, MagnitudePruneConfig(sparsity=0.5), mydata, force=True),
    }
    for name, stage in stages.items():
        with pytest.raises(BundleError, match="not an edgekd bundle"):
            stage()
        assert users_files_kept(mydata), name


def test_pack_onto_a_folder_or_a_link_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = fake_bundle(tmp_path / "b")
    folder = users_folder(tmp_path / "out.tar.gz")
    assert main(["pack", str(bundle.path), str(folder), "--force"]) == 2
    err = capsys.readouterr().err
    assert "is a folder, not an archive; refusing to replace it, with or without --force" in err and "Traceback" not in err
    assert users_files_kept(folder)
    (tmp_path / "link.zip").symlink_to(tmp_path / "elsewhere.zip")
    assert main(["pack", str(bundle.path), str(tmp_path / "link.zip"), "--force"]) == 2
    assert "is a symbolic link" in capsys.readouterr().err and not (tmp_path / "elsewhere.zip").exists()
    (tmp_path / "old.zip").write_bytes(b"an older archive")
    assert main(["pack", str(bundle.path), str(tmp_path / "old.zip"), "--force"]) == 0  # a regular file may be replaced
    assert (tmp_path / "old.zip").read_bytes()[:2] == b"PK"


# --- one writer per output -------------------------------------------------------------------------------------

HOLDER = """
import sys, time
from edgekd.writer import BundleWriter
writer = BundleWriter(sys.argv[1]).__enter__()
(writer.path / "model.onnx").write_bytes(b"a live build")
print(writer.path, flush=True)
time.sleep(120)
"""


def test_a_second_writer_to_the_same_output_is_refused_and_never_deletes_a_live_build(tmp_path: Path) -> None:
    target = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        live = Path(holder.stdout.readline().strip())  # type: ignore[union-attr]
        assert live.name.startswith(".out.partial-") and (live / "model.onnx").is_file()
        with pytest.raises(BundleError, match="another edgekd process is writing it .*wait for it to finish or choose another output path"):
            fake_bundle(target)
        assert (live / "model.onnx").read_bytes() == b"a live build", "the live build was left alone"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # Killed: its build is now stale, and the next writer (holding the lock) removes it.
    assert fake_bundle(target) and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --- temporary folders ------------------------------------------------------------------------------------------

@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_failed_local_target_check_leaves_no_temporary_folder(private_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["target", "check", str(tmp_path / "missing"), "--target", "local"]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert list(private_tmp.iterdir()) == [], "no edgekd-target-* folder is left"


def test_static_quantization_keeps_onnx_runtimes_temporary_folders_in_the_build_folder(
    untrained_onnx: dict[str, Bundle], private_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd.quantize.stage import quantize

    made: list[Path] = []
    original = tempfile.mkdtemp

    def recording(*args: object, **kwargs: object) -> str:
        path = original(*args, **kwargs)  # type: ignore[arg-type]
        made.append(Path(path))
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", recording)
    out = tmp_path / "static"
    quantize(untrained_onnx["tinybert-single"].path, OnnxStaticConfig(samples=8, min_agreement=0.0, eval_samples=8), out)
    names = [p.name for p in made]
    assert any(n.startswith("pre.quant.") for n in names) and any(n.startswith("ort.quant.") for n in names), names
    # Every one inside the writer's `.static.partial-*` build folder, which the next writer removes after a kill.
    assert all(p.is_relative_to(tmp_path) and any(part.startswith(".static.partial-") for part in p.parts) for p in made), made
    assert list(private_tmp.iterdir()) == [] and tempfile.tempdir == str(private_tmp)


def test_sigterm_during_bench_leaves_no_bundle_copies_in_the_temporary_directory(untrained_onnx: dict[str, Bundle], tmp_path: Path) -> None:
    private = tmp_path / "tmp"
    private.mkdir()
    bundle = untrained_onnx["bilstm-single"]
    command = [sys.executable, "-m", "edgekd.cli", "bench", str(bundle.path), "-o", str(tmp_path / "report"), "--texts", "4"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TMPDIR": str(private)})
    copied = lambda: any((p / bundle.path.name / MANIFEST).is_file() for p in private.glob("edgekd-target-*"))  # noqa: E731
    deadline = time.monotonic() + 120
    while not copied() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    alive = process.poll() is None
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert alive, f"bench ended before its bundle copy could be seen: {out}{err[-2000:]}"
    assert process.returncode != 0 and "Traceback" not in err, err[-2000:]
    assert list(private.iterdir()) == [], f"left in the temporary directory: {sorted(str(p) for p in private.rglob('*'))[:5]}"
    assert not (tmp_path / "report" / "report.json").exists()



def test_the_device_wheel_is_removed_when_the_process_exits(tmp_path: Path) -> None:
    """The edgekd wheel a process builds for its ssh/qemu targets lives in the temporary directory until it exits."""
    probe = "from edgekd.runtime.targets.package import runtime_archive; print(runtime_archive())"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(tmp_path)
    assert list(tmp_path.iterdir()) == [], "an edgekd-wheel-* folder is left in the temporary directory"


def test_the_device_wheel_is_built_from_a_copy_of_the_sources(tmp_path: Path) -> None:
    """setuptools leaves build/ where it builds, and a stale build/ would ship deleted modules to the device: the
    wheel is built from a copy, so the checkout gains no build/ or *.egg-info, and a module only in a stale build/
    does not reach the wheel."""
    import edgekd

    checkout = Path(edgekd.__file__).resolve().parent.parent
    if not (checkout / "pyproject.toml").is_file():
        pytest.skip("edgekd is installed from a wheel: the archive is zipped from the package, nothing is built")
    stale = checkout / "build" / "lib" / "edgekd" / "stale_module_for_the_test.py"
    before = {p.name for p in checkout.iterdir()}
    stale.parent.mkdir(parents=True, exist_ok=True)
    try:
        stale.write_text("deleted = True\n")
        probe = "import zipfile; from edgekd.runtime.targets.package import runtime_archive; print(zipfile.ZipFile(runtime_archive()).namelist())"
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "TMPDIR": str(tmp_path)})
        assert done.returncode == 0, done.stderr
        assert "edgekd/runtime/encoder.py" in done.stdout and "stale_module_for_the_test" not in done.stdout
    finally:
        stale.unlink(missing_ok=True)
        if "build" not in before:
            shutil.rmtree(checkout / "build", ignore_errors=True)
    assert {p.name for p in checkout.iterdir()} - before == set()
