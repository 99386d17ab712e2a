"""What the CLI prints about a bundle: `edgekd inspect`'s summary, and the results of a derived bundle (its scores,
parity with its parent, sizes)."""

from __future__ import annotations

from edgekd.bundle import Bundle


def print_export(bundle: Bundle) -> None:
    """What an export wrote: parity with the parent per compared set, scores, ORT's fusions."""
    m = bundle.manifest.metrics
    print(f"{bundle.manifest.format} bundle: {bundle.path}")
    for row in (m.parity or {}).get("outputs", []):
        print(f"  parity {row['name']:<22} {row['examples']:>5} examples  max|diff| {row['max_abs_diff']:.2e}  "
              f"agreement {row['agreement']:.4f}  SQNR {db(row['sqnr_db'])}")
    scores = m.scores()
    print(f"  {scores.describe() if scores else 'dev: not measured'}")
    fusions = (bundle.manifest.architecture.export or {}).get("fusions")
    if fusions is not None:
        print("  fusions: " + (", ".join(f"{k} {v}" for k, v in fusions.items()) or "none fired"))


def print_derived(bundle: Bundle) -> None:
    """What a quantize or prune run wrote: dev metrics, agreement and SQNR against the parent, sizes."""
    m = bundle.manifest.metrics
    size, parent_size = m.footprint or {}, m.parent_footprint or {}
    arch = bundle.manifest.architecture
    details = arch.quantize or arch.prune or arch.inc or {}
    scores, parent = m.scores(), m.parent_dev or {}
    print(f"{details.get('method', bundle.manifest.produced_by.stage)} bundle: {bundle.path}")
    print(f"  {scores.describe() if scores else 'dev: not measured'}"
          + "; parent: " + ", ".join(f"{k} {v:.4f}" for k, v in parent.items() if isinstance(v, float)))
    for row in (m.parity or {}).get("outputs", []):
        print(f"  vs parent {row['name']:<8} {row['examples']:>5} examples  agreement {row['agreement']:.4f}  SQNR {db(row['sqnr_db'])}")
    print(f"  parameters {size['parameters']:,} ({size['nonzero_parameters']:,} non-zero), parent {parent_size['parameters']:,}; "
          f"file {size['bytes'] / 1e6:.2f} MB (gzip {size['gzip_bytes'] / 1e6:.2f} MB), parent {parent_size['bytes'] / 1e6:.2f} MB "
          f"(gzip {parent_size['gzip_bytes'] / 1e6:.2f} MB)")
    if details.get("method") == "inc":
        from edgekd.quantize.inc import inc_trials_table

        print("  Neural Compressor trials:\n    " + "\n    ".join(inc_trials_table(details)))


def db(value: float | str) -> str:
    return f"{value:.1f} dB" if isinstance(value, float) else f"{value} dB"


def format_summary(bundle: Bundle) -> str:
    """A human-readable summary of a bundle for `edgekd inspect`."""
    m = bundle.manifest
    total = sum(f.bytes for f in m.files.values())
    lines = [
        f"{bundle.path}  ({m.kind}, {m.format}, schema {m.schema_version}, edgekd {m.edgekd_version})",
        f"  sha256     {bundle.sha256}",
        f"  task       {m.task.name}: {m.task.kind}-text {m.task.problem}, labels {', '.join(m.task.labels)}",
        "  model      " + ", ".join(f"{k} {v}" for k, v in m.architecture.facts().items()),
        f"  tokenizer  {m.tokenizer.type}, max length {m.tokenizer.max_length}, lowercase {m.tokenizer.lowercase}",
        "  inputs     " + ", ".join(f"{t.name} {t.dtype}{t.shape}" for t in m.inputs),
        "  outputs    " + ", ".join(f"{t.name} {t.dtype}{t.shape}" for t in m.outputs),
        f"  files      {len(m.files)} files, {total / 1e6:.1f} MB, all hashes verified",
    ]
    for name, entry in sorted(m.files.items(), key=lambda kv: -kv[1].bytes)[:5]:
        lines.append(f"             {entry.bytes / 1e6:9.2f} MB  {name}")
    scores = m.metrics.scores()
    if scores is not None:
        lines.append(f"  scores     {scores.describe()}")
    parent = f"{m.parent.path} ({m.parent.sha256[:12]})" if m.parent else "none"
    lines.append(f"  lineage    stage {m.produced_by.stage}, {m.produced_by.time}, seed {m.produced_by.seed}, parent {parent}")
    return "\n".join(lines)
