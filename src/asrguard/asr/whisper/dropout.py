"""Inference-time dropout for Whisper, which was trained without it: hooks on the attention
output projections and the feed-forward layers' inputs, idle until a draw is set.

Hooks are small objects, not lambdas, so a recogniser carrying them pickles (Ray ships
recognisers to its workers that way).
"""

from __future__ import annotations

import torch

SITES = ("encoder", "decoder", "both")


class InferenceDropout:
    """The current draw ``(p, generator)``, or ``None`` when idle, applied by every installed hook."""

    def __init__(self):
        self.draw: tuple[float, torch.Generator] | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.draw is None:
            return x
        p, generator = self.draw
        keep = torch.rand(x.shape, generator=generator) >= p
        return x * keep.to(x.dtype) / (1.0 - p)

    def install(self, model, sites: str) -> list:
        """Hook every layer at ``sites`` of a ``WhisperForConditionalGeneration``; returns the handles."""
        layers = []
        if sites in ("encoder", "both"):
            layers += list(model.model.encoder.layers)
        if sites in ("decoder", "both"):
            layers += list(model.model.decoder.layers)
        handles = []
        for layer in layers:
            for attention in ("self_attn", "encoder_attn"):
                if hasattr(layer, attention):
                    handles.append(getattr(layer, attention).out_proj.register_forward_hook(_OnOutput(self)))
            handles.append(layer.fc2.register_forward_pre_hook(_OnInput(self)))
        return handles


class _OnOutput:
    """Forward hook: dropout on a layer's output."""

    def __init__(self, dropout: InferenceDropout):
        self.dropout = dropout

    def __call__(self, module, args, output):
        return self.dropout(output)


class _OnInput(_OnOutput):
    """Forward pre-hook: dropout on a layer's input."""

    def __call__(self, module, args):
        return (self.dropout(args[0]),)


__all__ = ["InferenceDropout", "SITES"]
