"""The torch models a bundle can hold, rebuilt from the bundle's files.

BERT-family models load through transformers' Auto classes; the BiLSTM student through its config.json. Stages after
distillation (export, quantize, benchmarks) load models from here, never from `edgekd.distill`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from edgekd.bundle import HF_CONFIG as CONFIG_FILE
from edgekd.errors import BundleError, UnsupportedError
from edgekd.records import MODEL_FILES

if TYPE_CHECKING:
    from edgekd.bundle import Bundle
WEIGHTS_FILE = MODEL_FILES["torch"]


class BiLSTMClassifier(nn.Module):
    """Tang et al.'s student: word embeddings, one bidirectional LSTM, a ReLU layer, the classifier.

    Single sentences: the last hidden states of both directions, concatenated. Pairs: one shared encoder for both
    sentences, then [h1, h2, h1 * h2, |h1 - h2|] (the siamese variant of the paper).
    """

    def __init__(self, vocab_size: int, embedding_dim: int, hidden: int, fc: int, num_labels: int, pair: bool, dropout: float) -> None:
        super().__init__()
        self.pair = pair
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(embedding_dim, hidden, num_layers=1, batch_first=True, bidirectional=True)
        features = 2 * hidden * (4 if pair else 1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(features, fc)
        self.classifier = nn.Linear(fc, num_labels)

    def encode(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The last hidden state of each direction, concatenated: (batch, 2 * hidden)."""
        embedded = self.embedding(input_ids)  # (batch, seq, embedding_dim)
        packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (final, _) = self.lstm(packed)  # final: (2 directions, batch, hidden)
        return torch.cat([final[0], final[1]], dim=-1)

    def head(self, h: torch.Tensor, h2: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from sentence encodings (batch, 2 * hidden): the pair features, the ReLU layer, the classifier."""
        if self.pair:
            assert h2 is not None, "a pair model needs both sentences"
            h = torch.cat([h, h2, h * h2, (h - h2).abs()], dim=-1)
        return self.classifier(self.dropout(torch.relu(self.fc(self.dropout(h)))))  # (batch, labels)

    def forward(
        self, input_ids: torch.Tensor, lengths: torch.Tensor, input_ids_b: torch.Tensor | None = None, lengths_b: torch.Tensor | None = None
    ) -> torch.Tensor:
        h2 = self.encode(input_ids_b, lengths_b) if self.pair and input_ids_b is not None and lengths_b is not None else None
        return self.head(self.encode(input_ids, lengths), h2)


def load_bilstm(directory: Path) -> BiLSTMClassifier:
    """Rebuild a saved BiLSTM student from a directory holding config.json and model.safetensors."""
    from safetensors.torch import load_file

    config = bilstm_config(directory)
    module = BiLSTMClassifier(
        config["vocab"], config["embedding_dim"], config["hidden"], config["fc"], config["num_labels"], config["pair"], config["dropout"]
    )
    module.load_state_dict(load_file(directory / WEIGHTS_FILE))
    return module.eval()


BILSTM_SIZES = ("vocab", "embedding_dim", "hidden", "fc", "num_labels")


def bilstm_config(directory: Path) -> dict[str, Any]:
    """A BiLSTM bundle's config.json, its sizes checked before a tensor is allocated: positive whole numbers, a model
    of at most a few billion parameters, `pair` a bool and `dropout` in [0, 1)."""
    from edgekd.hf_config import MAX_PARAMETERS, MAX_SIZE, read_model_config

    path = directory / CONFIG_FILE
    config = read_model_config(path, BundleError)
    for key in BILSTM_SIZES:
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SIZE:
            raise BundleError(f"{path}: {key} is {str(value)[:60]}; a whole number from 1 to {MAX_SIZE:,} (the file is damaged)")
    dropout = config.get("dropout")
    if not isinstance(config.get("pair"), bool) or isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise BundleError(f"{path}: `pair` must be true or false and `dropout` a number in [0, 1) (the file is damaged)")
    emb, hidden = config["embedding_dim"], config["hidden"]
    features = 2 * hidden * (4 if config["pair"] else 1)
    parameters = config["vocab"] * emb + 8 * hidden * (emb + hidden) + features * config["fc"] + config["fc"] * config["num_labels"]
    if parameters > MAX_PARAMETERS:
        raise BundleError(f"{path}: describes a BiLSTM of about {parameters:.3g} parameters (vocab {config['vocab']:,}, "
                          f"embedding_dim {emb:,}, hidden {hidden:,}), more than the {MAX_PARAMETERS / 1e9:.0f} billion "
                          "edgekd builds; the file is damaged")
    return config


def check_hf_config(directory: Path) -> None:
    """Refuse a torch bundle whose config.json describes an impossible model, before transformers allocates it."""
    from edgekd.hf_config import check_sizes, read_model_config

    path = directory / CONFIG_FILE
    check_sizes(read_model_config(path, BundleError), str(path), BundleError)


def load_torch_model(bundle: Bundle) -> nn.Module:
    """The model of a torch-format bundle, in eval mode on the CPU."""
    manifest = bundle.manifest
    if manifest.format != "torch":
        raise UnsupportedError(f"{bundle.path}: is a {manifest.format} bundle; this step needs a torch bundle (a teacher or a distilled student)")
    family = manifest.architecture.family
    if family == "bilstm":
        return load_bilstm(bundle.path)
    if (bundle.path / CONFIG_FILE).is_file():
        from transformers import AutoModelForSequenceClassification

        check_hf_config(bundle.path)

        # Eager attention: the exported graph then has the MatMul/Softmax pattern ONNX Runtime's fusions recognise.
        # Bundles hold safetensors only: a pickle placed beside them is never read.
        model = AutoModelForSequenceClassification.from_pretrained(bundle.path, attn_implementation="eager", use_safetensors=True)
        return model.eval()
    raise BundleError(f"{bundle.path}: architecture family {family!r} has no {CONFIG_FILE}; re-create the bundle with its stage")
