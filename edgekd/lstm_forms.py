"""The BiLSTM's length-aware LSTM in forms the exporters can take.

Training runs `nn.LSTM` on packed sequences, which neither exporter converts. Two equivalent forms:
- ONNX: one `LSTM` operator with `sequence_lens`, emitted by a custom symbolic (weights re-ordered to ONNX's gates);
- TFLite: the recurrence unrolled over a fixed number of steps, each step masked by the example's length, so padded
  steps leave the state unchanged: the forward direction stops at the last word; the backward one starts there.
"""

from __future__ import annotations

import torch
from torch import nn


def _directions(lstm: nn.LSTM) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(W_ih, W_hh, b_ih + b_hh) of the forward and the backward direction, in PyTorch's gate order i, f, g, o."""
    out = []
    for suffix in ("", "_reverse"):
        w_ih, w_hh = getattr(lstm, f"weight_ih_l0{suffix}"), getattr(lstm, f"weight_hh_l0{suffix}")
        bias = getattr(lstm, f"bias_ih_l0{suffix}") + getattr(lstm, f"bias_hh_l0{suffix}")
        out.append((w_ih, w_hh, bias))
    return out


def masked_bilstm(embedded: torch.Tensor, lengths: torch.Tensor, lstm: nn.LSTM) -> torch.Tensor:
    """Final hidden states of both directions, (batch, 2 * hidden), for right-padded (batch, seq, in) inputs.

    Equal to the packed `nn.LSTM`'s final states: a step at or past an example's length keeps the previous state.
    """
    finals = [_recurrence(embedded, lengths, *weights, reverse=bool(d)) for d, weights in enumerate(_directions(lstm))]
    return torch.cat(finals, dim=-1)


def _recurrence(
    embedded: torch.Tensor, lengths: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor, *, reverse: bool, onnx_order: bool = False
) -> torch.Tensor:
    """One direction's final hidden state (batch, hidden); gates in PyTorch's order i, f, g, o or ONNX's i, o, f, c."""
    batch, steps, _ = embedded.shape
    hidden = w_hh.shape[1]
    projected = embedded @ w_ih.T + bias  # (batch, seq, 4 * hidden): the input part of every step in one matmul
    h = embedded.new_zeros(batch, hidden)
    c = embedded.new_zeros(batch, hidden)
    for t in range(steps - 1, -1, -1) if reverse else range(steps):
        gates = projected[:, t] + h @ w_hh.T  # (batch, 4 * hidden)
        if onnx_order:
            i, o, f, g = gates.chunk(4, dim=-1)
        else:
            i, f, g, o = gates.chunk(4, dim=-1)
        c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_next = torch.sigmoid(o) * torch.tanh(c_next)
        keep = (lengths > t).to(embedded.dtype).unsqueeze(-1)  # (batch, 1): 1 inside the sentence
        h = keep * h_next + (1 - keep) * h
        c = keep * c_next + (1 - keep) * c
    return h


def onnx_weights(lstm: nn.LSTM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """W (2, 4H, in), R (2, 4H, H), B (2, 8H) for ONNX's LSTM: gates re-ordered from i, f, g, o to i, o, f, c."""

    def reorder(t: torch.Tensor) -> torch.Tensor:
        i, f, g, o = t.chunk(4, dim=0)
        return torch.cat([i, o, f, g], dim=0)

    ws, rs, bs = [], [], []
    for suffix in ("", "_reverse"):
        ws.append(reorder(getattr(lstm, f"weight_ih_l0{suffix}")))
        rs.append(reorder(getattr(lstm, f"weight_hh_l0{suffix}")))
        bs.append(torch.cat([reorder(getattr(lstm, f"bias_ih_l0{suffix}")), reorder(getattr(lstm, f"bias_hh_l0{suffix}"))]))
    return torch.stack(ws).detach(), torch.stack(rs).detach(), torch.stack(bs).detach()


class _OnnxLSTM(torch.autograd.Function):
    """Eager: the masked recurrence. Exported: one ONNX LSTM operator with per-example sequence lengths."""

    @staticmethod
    def forward(ctx, embedded, lengths, w, r, b):  # noqa: ANN001, ANN205 - autograd.Function signature
        hidden = r.shape[-1]
        finals = [
            _recurrence(embedded, lengths, w[d], r[d], b[d, : 4 * hidden] + b[d, 4 * hidden :], reverse=bool(d), onnx_order=True)
            for d in range(2)
        ]
        return torch.cat(finals, dim=-1)

    @staticmethod
    def symbolic(g, embedded, lengths, w, r, b):  # noqa: ANN001, ANN205 - torch.onnx symbolic signature
        hidden = r.type().sizes()[-1]
        time_major = g.op("Transpose", embedded, perm_i=[1, 0, 2])  # (seq, batch, in)
        seq_lens = g.op("Cast", lengths, to_i=6)  # int32, as ONNX's LSTM wants
        _, final_h, _ = g.op(
            "LSTM", time_major, w, r, b, seq_lens, direction_s="bidirectional", hidden_size_i=hidden, outputs=3
        )  # final_h: (2, batch, hidden)
        batch_major = g.op("Transpose", final_h, perm_i=[1, 0, 2])
        return g.op("Flatten", batch_major, axis_i=1)  # (batch, 2 * hidden)


class OnnxBiLSTM(nn.Module):
    """A BiLSTMClassifier whose encoder exports as one ONNX LSTM operator."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        w, r, b = onnx_weights(model.lstm)
        self.register_buffer("w", w)
        self.register_buffer("r", r)
        self.register_buffer("b", b)

    def _encode(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return _OnnxLSTM.apply(self.model.embedding(input_ids), lengths, self.w, self.r, self.b)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor, input_ids_b: torch.Tensor | None = None, lengths_b: torch.Tensor | None = None) -> torch.Tensor:
        h2 = self._encode(input_ids_b, lengths_b) if input_ids_b is not None and lengths_b is not None else None
        return self.model.head(self._encode(input_ids, lengths), h2)


class UnrolledBiLSTM(nn.Module):
    """A BiLSTMClassifier with the masked, unrolled recurrence (fixed-length inputs: TFLite)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def _encode(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return masked_bilstm(self.model.embedding(input_ids), lengths, self.model.lstm)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor, input_ids_b: torch.Tensor | None = None, lengths_b: torch.Tensor | None = None) -> torch.Tensor:
        h2 = self._encode(input_ids_b, lengths_b) if input_ids_b is not None and lengths_b is not None else None
        return self.model.head(self._encode(input_ids, lengths), h2)
