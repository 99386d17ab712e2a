"""Integrity: every path a manifest names stays inside the bundle and is a listed (hashed) file, the golden self-check
acts on a model that no longer reproduces its golden logits, and bad runtime inputs (labels, tokenizer files,
vocabulary and length that do not fit the model, target check options) are one line and exit 2, never a traceback."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgekd.runtime.classifier import Classifier
from edgekd.runtime.golden import FAMILY_ATOL, golden_tolerance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekd.bundle import MANIFEST, Bundle, Manifest, parse_manifest
from edgekd.records import Architecture
from edgekd.cli import main
from edgekd.errors import BundleError, EdgekdError, ParityError
from edgekd.testing import fake_manifest_fields, legacy_tokenizer_layout


def _copy(bundle: Bundle, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(bundle.path, target)
    return target


def _edit_manifest(root: Path, change: Any) -> None:
    manifest = json.loads((root / MANIFEST).read_text())
    change(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest))


def _rehash(root: Path, *names: str) -> None:
    """Update the manifest's entries of `names` to the files on disk: what a tool that re-hashed a bundle would do."""

    def change(manifest: dict[str, Any]) -> None:
        for name in names:
            raw = (root / name).read_bytes()
            manifest["files"][name] = {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}

    _edit_manifest(root, change)


def _set(path: str, value: Any) -> Any:
    """A manifest change setting a dotted key."""

    def change(manifest: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = manifest
        for key in parents:
            node = node[key]
        node[last] = value

    return change


def _no_traceback(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------------------------------------------------------
# Paths: confined to the bundle, and listed.


@pytest.mark.parametrize("path", ["/tmp/elsewhere", "../tokenizer", "tokenizer/../../x", "tokenizer\\x", "", "./", "tok\x00en"])
def test_a_tokenizer_path_outside_the_bundle_is_refused(untrained_onnx: dict[str, Bundle], tmp_path: Path, path: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(untrained_onnx["tinybert-single"], tmp_path)
    _edit_manifest(copy, _set("tokenizer.path", path))
    with pytest.raises(BundleError, match="tokenizer.path: .*not a plain relative path inside the bundle"):
        Bundle.open(copy)
    for argv in (["predict", str(copy), "good"], ["inspect", str(copy)], ["pack", str(copy), str(tmp_path / "b.tar.gz")]):
        assert main(argv) == 2, argv
        assert "not a plain relative path" in _no_traceback(capsys)
    assert not (tmp_path / "b.tar.gz").exists()
    # An archive made by hand with that manifest is not imported either.
    with tarfile.open(tmp_path / "hand.tar.gz", "w:gz") as tar:
        for name in ["manifest.json", *sorted(json.loads((copy / MANIFEST).read_text())["files"])]:
            tar.add(copy / name, arcname=f"copy/{name}")
    assert main(["import", str(tmp_path / "hand.tar.gz"), "-o", str(tmp_path / "imported")]) == 2
    assert "not a plain relative path" in _no_traceback(capsys)
    assert not (tmp_path / "imported").exists()


def test_a_tokenizer_folder_the_manifest_does_not_list_is_refused(untrained_onnx: dict[str, Bundle], tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # The reproduction: a second tokenizer folder nobody hashed, and the manifest (not itself hashed) pointed at it.
    copy = _copy(untrained_onnx["tinybert-single"], tmp_path)
    _unhashed_tokenizer_folder(copy)
    _edit_manifest(copy, _set("tokenizer", {**json.loads((copy / MANIFEST).read_text())["tokenizer"], "path": "unhashed", "files": []}))
    with pytest.raises(BundleError, match="unhashed/tokenizer.json: in the tokenizer folder but not listed in the manifest"):
        Bundle.open(copy)
    assert main(["inspect", str(copy)]) == 2
    assert "not listed in the manifest" in _no_traceback(capsys)
    # Opened without hash checks, the runtime still reads only files the manifest lists.
    with pytest.raises(BundleError, match="has no file 'unhashed/tokenizer.json'"):
        Classifier.load(Bundle.open(copy, verify=False))


def _unhashed_tokenizer_folder(copy: Path) -> None:
    """A second tokenizer folder nobody hashed: the bundle's tokenizer files copied into `unhashed/`."""
    (copy / "unhashed").mkdir()
    for name in json.loads((copy / MANIFEST).read_text())["tokenizer"]["files"]:
        shutil.copy(copy / name, copy / "unhashed" / name)


def test_an_unlisted_file_in_the_tokenizer_folder_is_refused(untrained_onnx: dict[str, Bundle], tmp_path: Path) -> None:
    # A bundle written before the root layout: its tokenizer folder is what loaders read whole.
    copy = _copy(untrained_onnx["tinybert-single"], tmp_path)
    legacy_tokenizer_layout(copy)
    Bundle.open(copy)
    (copy / "tokenizer" / "added_tokens.json").write_text('{"good": 7}')
    with pytest.raises(BundleError, match="tokenizer/added_tokens.json: in the tokenizer folder but not listed"):
        Bundle.open(copy)


def test_a_tokenizer_folder_that_links_outside_is_refused(untrained_onnx: dict[str, Bundle], tmp_path: Path) -> None:
    copy = _copy(untrained_onnx["tinybert-single"], tmp_path)
    legacy_tokenizer_layout(copy)
    shutil.move(copy / "tokenizer", tmp_path / "outside")
    (copy / "tokenizer").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(BundleError, match="tokenizer.json: lies outside the bundle"):
        Bundle.open(copy)


def test_the_model_file_is_read_only_when_listed(untrained_onnx: dict[str, Bundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(untrained_onnx["tinybert-single"], tmp_path)
    _edit_manifest(copy, lambda m: m["files"].pop("model.onnx"))
    with pytest.raises(BundleError, match="the bundle has no file 'model.onnx'"):
        Classifier.load(copy)
    assert main(["predict", str(copy), "good"]) == 2
    assert "has no file 'model.onnx'" in _no_traceback(capsys)


@pytest.mark.parametrize(("golden", "message"), [
    ("/etc/passwd", "golden: .*not a plain relative path"),
    ("../golden.npz", "golden: .*not a plain relative path"),
    ("other.npz", "golden 'other.npz' is not one of the files the manifest lists"),
])
def test_the_golden_file_is_a_listed_file_of_the_bundle(untrained_onnx: dict[str, Bundle], tmp_path: Path, golden: str, message: str) -> None:
    copy = _copy(untrained_onnx["tinybert-single"], tmp_path)
    shutil.copy(copy / "golden.npz", copy / "other.npz")
    _edit_manifest(copy, _set("golden", golden))
    with pytest.raises(BundleError, match=message):
        Bundle.open(copy)


@pytest.mark.parametrize(("content", "message"), [
    (b"not a zip", "not a golden file numpy reads"),
    (None, "a pickled|not a golden file numpy reads"),
    ("no logits", "has no logits array"),
    ("one column", "its texts are"),
])
def test_a_golden_file_that_is_not_one_is_a_bundle_error(untrained_onnx: dict[str, Bundle], tmp_path: Path, content: Any, message: str) -> None:
    copy = _copy(untrained_onnx["tinybert-single"], tmp_path)
    golden = dict(np.load(copy / "golden.npz"))
    if content is None:
        np.savez(copy / "golden.npz", logits=np.array([{"a": 1}], dtype=object), texts=golden["texts"])
    elif content == "no logits":
        np.savez(copy / "golden.npz", texts=golden["texts"])
    elif content == "one column":
        np.savez(copy / "golden.npz", logits=golden["logits"], texts=golden["texts"][:, 0])
    else:
        (copy / "golden.npz").write_bytes(content)
    _rehash(copy, "golden.npz")
    with pytest.raises(BundleError, match=message):
        Bundle.open(copy).read_golden()


# ---------------------------------------------------------------------------------------------------------------------
# The golden self-check acts.


def _swap_model(copy: Path, shift: float) -> None:
    """Replace model.onnx by another valid model: the same graph with the classifier's bias shifted."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(copy / "model.onnx"))
    bias = next(t for t in reversed(model.graph.initializer) if list(t.dims) == [2] and "bias" in t.name)
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(shift), bias.name))
    onnx.save(model, str(copy / "model.onnx"))
    _rehash(copy, "model.onnx")


@pytest.mark.parametrize("name", ["tinybert-single", "bilstm-pair"])
def test_a_swapped_model_fails_the_golden_check_on_load(untrained_onnx: dict[str, Bundle], tmp_path: Path, name: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(untrained_onnx[name], tmp_path)
    assert Classifier.load(copy).check_golden().max_abs_diff < 1e-5  # this machine wrote it: the same numbers
    _swap_model(copy, 3.0)
    Bundle.open(copy)  # every hash verifies ...
    with pytest.raises(ParityError, match=r"does not reproduce its golden outputs.*\n  - golden \(8 examples\): max \|logit - stored\| 3 > 0.000?1"):
        Classifier.load(copy)  # ... and the model is refused
    assert Classifier.load(copy, verify=False).check_golden().max_abs_diff == pytest.approx(3.0, abs=1e-4)
    text = "good film\tgood plot" if name.endswith("pair") else "good film"
    assert main(["predict", str(copy), text]) == 1
    assert "max |logit - stored| 3" in _no_traceback(capsys)


def test_target_check_fails_on_a_swapped_model(untrained_onnx: dict[str, Bundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(untrained_onnx["tinybert-single"], tmp_path)
    _swap_model(copy, 3.45)
    assert main(["target", "check", str(copy), "--target", "local", "--samples", "4"]) == 1
    captured = capsys.readouterr()
    assert "golden: max |logit - stored| 3.45e+00 (tolerance 1.00e-03)" in captured.out
    assert "max |logit - stored| 3.45 > 0.001" in captured.err and "Traceback" not in captured.err


def test_a_tokenizer_that_encodes_otherwise_fails_the_golden_check(untrained_onnx: dict[str, Bundle], tmp_path: Path) -> None:
    copy = _copy(untrained_onnx["tinybert-single"], tmp_path)
    raw = json.loads((copy / "tokenizer.json").read_text())
    vocab = raw["model"]["vocab"]
    # Two fixture words trade ids: every file still parses and every id fits the model.
    vocab["good"], vocab["bad"] = vocab["bad"], vocab["good"]
    vocab["the"], vocab["movie"] = vocab["movie"], vocab["the"]
    (copy / "tokenizer.json").write_text(json.dumps(raw))
    _rehash(copy, "tokenizer.json")
    with pytest.raises(ParityError, match="input_ids: this tokenizer gives"):
        Classifier.load(copy)


def test_golden_tolerance_of_float_and_quantized_bundles() -> None:
    stored = np.array([[4.0, -4.0], [1.0, 0.5]], dtype=np.float32)
    float_bundle = Manifest.model_validate({"schema_version": 1, "edgekd_version": "0", "files": {},
                                            **fake_manifest_fields(architecture={"family": "bilstm"})})
    assert golden_tolerance(float_bundle, {"logits": stored}) == FAMILY_ATOL["bilstm"]
    quantized = float_bundle.model_copy(update={"architecture": Architecture(family="bert", quantize={"method": "onnx-dynamic"})})
    # 5% of the largest stored logit ...
    assert golden_tolerance(quantized, {"logits": stored}) == pytest.approx(0.2)
    # ... or twice the file's own quantization error on the golden texts, whichever is larger.
    assert golden_tolerance(quantized, {"logits": stored, "parent_logits": stored + 0.25}) == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------------------------------
# Bad runtime inputs: one line, exit 2.


def test_a_manifest_without_labels_is_refused(untrained_onnx: dict[str, Bundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(untrained_onnx["tinybert-single"], tmp_path)
    _edit_manifest(copy, _set("task.labels", []))
    with pytest.raises(BundleError, match="task.labels: .*is empty; a classification task lists its label names"):
        Bundle.open(copy)
    assert main(["predict", str(copy), "good"]) == 2
    assert "is empty" in _no_traceback(capsys)
    _edit_manifest(copy, _set("task.labels", ["a", "a"]))
    with pytest.raises(BundleError, match="task.labels: .*has duplicates"):
        Bundle.open(copy)


def test_labels_that_do_not_fit_the_model_are_refused(untrained_onnx: dict[str, Bundle], tmp_path: Path) -> None:
    copy = _copy(untrained_onnx["tinybert-single"], tmp_path)
    _edit_manifest(copy, _set("task.labels", ["a", "b", "c"]))
    with pytest.raises(BundleError, match="golden.npz: its logits have shape"):
        Classifier.load(copy)
    with pytest.raises(BundleError, match=r"the model gives logits of shape \[1, 2\], but the manifest's task has 3 output"):
        Classifier.load(copy, verify=False).predict(["good"])


@pytest.mark.parametrize("content", ["{", "[]", '{"version": "1.0"}', "\xff"])
def test_a_malformed_tokenizer_json_is_a_bundle_error(untrained_onnx: dict[str, Bundle], tmp_path: Path, content: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(untrained_onnx["tinybert-single"], tmp_path)
    (copy / "tokenizer.json").write_text(content, encoding="latin-1")
    _rehash(copy, "tokenizer.json")
    with pytest.raises(BundleError, match="tokenizer.json: not a tokenizer file the `tokenizers` library reads"):
        Classifier.load(copy)
    assert main(["predict", str(copy), "good"]) == 2
    assert "not a tokenizer file" in _no_traceback(capsys)


@pytest.mark.parametrize(("content", "message"), [
    ("{", "not valid UTF-8 JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"vocab": ["[PAD]", "[UNK]", "[MASK]"], "lowercase": true}', "max_length missing"),
    ('{"vocab": ["a", "b", "c"], "lowercase": true, "max_length": 8}', "vocab starts with"),
    ('{"vocab": ["[PAD]", "[UNK]", "[MASK]", 3], "lowercase": true, "max_length": 8}', "not a list of strings"),
    ('{"vocab": ["[PAD]", "[UNK]", "[MASK]", "a", "a"], "lowercase": true, "max_length": 8}', "duplicate word"),
    ('{"vocab": ["[PAD]", "[UNK]", "[MASK]"], "lowercase": "yes", "max_length": 8}', "lowercase is"),
    ('{"vocab": ["[PAD]", "[UNK]", "[MASK]"], "lowercase": true, "max_length": -1}', "max_length is -1"),
])
def test_a_malformed_word_vocabulary_is_a_bundle_error(untrained_onnx: dict[str, Bundle], tmp_path: Path, content: str, message: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(untrained_onnx["bilstm-single"], tmp_path)
    (copy / "word_vocab.json").write_text(content)
    _rehash(copy, "word_vocab.json")
    with pytest.raises(BundleError, match=f"word_vocab.json: not a word vocabulary.*{message}"):
        Classifier.load(copy)
    assert main(["predict", str(copy), "good"]) == 2
    assert "not a word vocabulary" in _no_traceback(capsys)


def _add_words(copy: Path, name: str, words: list[str]) -> None:
    """Grow the tokenizer's vocabulary past the model's embedding table (ids the model never saw)."""
    path = copy / ("tokenizer.json" if name.startswith("tinybert") else "word_vocab.json")
    raw = json.loads(path.read_text())
    if name.startswith("tinybert"):
        raw["model"]["vocab"].update({word: 5000 + i for i, word in enumerate(words)})
    else:
        raw["vocab"] += words
        raw["vocab"] += [f"filler{i}" for i in range(5000)]
    path.write_text(json.dumps(raw))
    _rehash(copy, path.relative_to(copy).as_posix())


@pytest.mark.parametrize("name", ["tinybert-single", "bilstm-single"])
def test_a_token_id_beyond_the_model_vocabulary_is_a_bundle_error(untrained_onnx: dict[str, Bundle], tmp_path: Path, name: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(untrained_onnx[name], tmp_path)
    _add_words(copy, name, ["zyzzyva"])
    with pytest.raises(BundleError, match="the model does not take token id .*, the largest that .* gives"):
        Classifier.load(copy)
    assert main(["predict", str(copy), "zyzzyva"]) == 2
    assert "does not take token id" in _no_traceback(capsys)
    # Without the load-time checks, the run that meets the id fails as a BundleError naming the model file.
    classifier = Classifier.load(copy, verify=False)
    assert classifier.predict(["good"])
    with pytest.raises(BundleError, match="model.onnx: onnxruntime failed to run the model on inputs of shape"):
        classifier.predict(["zyzzyva"] if name.startswith("tinybert") else ["filler4999"])


def test_a_max_length_past_what_the_model_takes_is_a_bundle_error(untrained_onnx: dict[str, Bundle], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(untrained_onnx["tinybert-single"], tmp_path)
    _edit_manifest(copy, _set("tokenizer.max_length", 10**12))
    with pytest.raises(BundleError, match="tokenizer.max_length: Input should be less than or equal to 65536"):
        Bundle.open(copy)
    _edit_manifest(copy, _set("tokenizer.max_length", 4096))
    with pytest.raises(BundleError, match="max_length 4096 exceeds the model's position embeddings .*, 128"):
        Classifier.load(copy)
    assert main(["predict", str(copy), "good " * 300]) == 2
    assert "exceeds the model's position embeddings" in _no_traceback(capsys)
    # A bundle without the config that says so: the run that is too long fails as a BundleError.
    (copy / "config.json").unlink()
    _edit_manifest(copy, lambda m: m["files"].pop("config.json"))
    classifier = Classifier.load(copy)
    with pytest.raises(BundleError, match="model.onnx: onnxruntime failed to run the model"):
        classifier.predict(["good " * 300])


def test_a_tflite_bundle_refuses_ids_and_lengths_its_model_does_not_take(untrained_onnx: dict[str, Bundle], tmp_path: Path) -> None:
    from edgekd.export.stage import export

    from edgekd.config import ExportConfig

    parent = untrained_onnx["tinybert-single"].manifest.parent
    assert parent is not None
    bundle = export(parent.path, ExportConfig(format="tflite", buckets=[8, 16]), tmp_path / "tflite")
    copy = _copy(bundle, tmp_path)
    _add_words(copy, "tinybert-single", ["zyzzyva"])
    with pytest.raises(BundleError, match="does not take token id 5000.*LiteRT failed to run the model"):
        Classifier.load(copy)
    with pytest.raises(BundleError, match="model.tflite: LiteRT failed to run the model on inputs of shape"):
        Classifier.load(copy, verify=False).predict(["zyzzyva"])
    _edit_manifest(copy, _set("tokenizer.max_length", 64))
    with pytest.raises(BundleError, match="max_length 64 exceeds the largest TFLite bucket, 16"):
        Classifier.load(copy)


@pytest.mark.parametrize(("option", "message"), [
    (["--timeout", "nan"], "--timeout nan"),
    (["--timeout", "-1"], "--timeout -1"),
    (["--timeout", "inf"], "--timeout inf"),
    (["--samples", "-5"], "--samples -5"),
    (["--samples", "0"], "--samples 0"),
])
def test_target_check_refuses_bad_numbers(untrained_onnx: dict[str, Bundle], option: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["target", "check", str(untrained_onnx["bilstm-single"].path), "--target", "local", *option]) == 2
    assert message in _no_traceback(capsys)


# ---------------------------------------------------------------------------------------------------------------------
# Fuzz: mutated manifests (paths, labels, tokenizer fields) into Bundle.open and Classifier.load give EdgekdErrors only.

PATHS = st.one_of(
    st.sampled_from(["tokenizer", "golden.npz", "model.onnx", "config.json", "/etc", "/tmp", "..", "../tokenizer", ".", "",
                     "tokenizer/", "tokenizer/tokenizer.json", "tok\x00", "a\\b", "~", "unhashed", "tokenizer//x"]),
    st.text(max_size=12),
)
FIELD_VALUES: dict[str, Any] = {
    "tokenizer.path": PATHS,
    "tokenizer.files": st.one_of(st.lists(PATHS, max_size=3), st.sampled_from([None, "tokenizer.json", [1], ["tokenizer.json"] * 2])),
    "tokenizer.type": st.one_of(st.sampled_from(["wordpiece", "word", "bpe", ""]), st.integers()),
    "tokenizer.max_length": st.one_of(st.integers(-5, 70_000), st.sampled_from([2**63, 10**30, 1.5, "8", None, True])),
    "tokenizer.lowercase": st.one_of(st.booleans(), st.sampled_from([None, "yes", 0])),
    "task.labels": st.one_of(st.lists(st.text(max_size=6), max_size=4), st.sampled_from([None, "ab", [1, 2], ["a", "a"]])),
    "task.problem": st.sampled_from(["classification", "regression", "ranking"]),
    "task.kind": st.sampled_from(["single", "pair", "triple"]),
    "golden": st.one_of(PATHS, st.none()),
    "format": st.sampled_from(["onnx", "tflite", "torch", "pte"]),
    "architecture": st.fixed_dictionaries({}, optional={"family": st.sampled_from(["bert", "bilstm", "gpt"]),
                                                         "quantize": st.just({"method": "x"})}),
}


@settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_manifests_give_only_edgekd_errors(untrained_onnx: dict[str, Bundle], tmp_path_factory: pytest.TempPathFactory,
                                                   data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(untrained_onnx)), label="bundle")
    copy = _copy(untrained_onnx[name], tmp_path_factory.mktemp("fuzz"))
    if data.draw(st.booleans(), label="second tokenizer folder"):
        _unhashed_tokenizer_folder(copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    for key in data.draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), min_size=1, max_size=4, unique=True), label="fields"):
        _set(key, data.draw(FIELD_VALUES[key], label=key))(manifest)
    if data.draw(st.booleans(), label="file table edit"):
        listed = sorted(manifest["files"])
        victim = data.draw(st.sampled_from(listed), label="renamed entry")
        manifest["files"][data.draw(PATHS, label="new name")] = manifest["files"].pop(victim)
    (copy / MANIFEST).write_text(json.dumps(manifest))
    try:
        parse_manifest((copy / MANIFEST).read_bytes())
        for verify in (True, False):
            Classifier.load(Bundle.open(copy, verify=verify)).predict([("good film",) * (2 if name.endswith("pair") else 1)])
    except EdgekdError as exc:
        assert str(exc)
    finally:
        shutil.rmtree(copy)
