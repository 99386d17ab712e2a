"""edgekd: distill a BERT teacher into an edge-ready student, export, quantize, and prove how it runs."""

from __future__ import annotations

__version__ = "0.1.0"
