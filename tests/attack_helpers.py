"""A tiny, fast recogniser behind the Recognizer interface, for testing attack mechanics.

Non-overlapping 20 ms frames go through one linear layer to log-posteriors over the CTC
characters. It is trivially steerable, so tests of bounds, masks, early stopping and
resuming run in well under a second per attack.
"""

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from asrguard.asr.base import AudioBatch, Realizations, Recognizer
from asrguard.attacks.base import required_frames
from asrguard.rng import require_seed
from asrguard.text import CHARACTERS, encode


class ToyRecognizer(Recognizer):
    sample_rate = 16000
    frame = 320

    def __init__(self, seed: int = 0, gain: float = 40.0):
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(self.frame, len(CHARACTERS), generator=g) * gain / self.frame ** 0.5
        self.bias = torch.zeros(len(CHARACTERS))
        self.bias[0] = 3.0  # blank wins on silence
        self.p = None
        self.generator = None

    vocabulary = CHARACTERS

    def target_fits(self, batch, targets):
        frames = (batch.lengths // self.frame).tolist()
        return [bool(t) and required_frames(t) <= n for t, n in zip(targets, frames)]

    def log_probs(self, batch: AudioBatch):
        self._check_rate(batch)
        x = batch.waveforms * batch.mask()
        n_frames = batch.lengths // self.frame
        usable = int(n_frames.max()) * self.frame
        frames = x[:, :usable].reshape(len(batch), -1, self.frame)
        if self.p:
            keep = torch.rand(frames.shape, generator=self.generator) >= self.p
            frames = frames * keep / (1 - self.p)
        return F.log_softmax(frames @ self.weight + self.bias, dim=-1), n_frames

    def loss(self, batch, targets):
        log_probs, lengths = self.log_probs(batch)
        encoded = [torch.tensor(encode(t)) for t in targets]
        return F.ctc_loss(log_probs.transpose(0, 1), torch.cat(encoded), lengths,
                          torch.tensor([len(e) for e in encoded]), reduction="none")

    def decode(self, log_probs, lengths):
        out = []
        for row, n in zip(log_probs.argmax(-1).tolist(), lengths.tolist()):
            row = row[:n]
            chars = [c for i, c in enumerate(row) if c != 0 and (i == 0 or row[i - 1] != c)]
            out.append(" ".join("".join(CHARACTERS[c] for c in chars).split()))
        return out

    @contextlib.contextmanager
    def stochastic(self, p=None, *, seed):
        previous = (self.p, self.generator)
        self.p = 0.05 if p is None else p
        self.generator = torch.Generator().manual_seed(require_seed(seed))
        try:
            yield self
        finally:
            self.p, self.generator = previous

    def realizations(self, audio, n, seed=0, *, p=None):
        batch = AudioBatch.from_waveforms([audio] * n, self.sample_rate)
        with torch.no_grad(), self.stochastic(p, seed=seed):
            lp, lengths = self.log_probs(batch)
        return Realizations(self.decode(lp, lengths), lp, int(lengths[0]), p, seed)


def speechlike(seconds: float, seed: int = 0, rate: int = 16000) -> np.ndarray:
    """Amplitude-modulated harmonics with some noise, peak about 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 40 * rng.random()
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(len(t))
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)
