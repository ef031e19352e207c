"""Sequential realisations: score after each chunk of draws and stop once the verdict is settled.

A detector with I = 50 pays for 50 realisations on every input, although most inputs (benign
speech above all) are decided long before. Here the I realisations are drawn in chunks, in
the order of the fixed-I pass (the same masks: realisation ``j`` is the same whichever chunk
draws it), and after each chunk the classifier scores the features of the draws so far. The
input is decided at the first chunk whose score is at least ``margins[k]`` away from the
threshold; one that never is gets the full-I score, so it is exactly the fixed-I verdict.

The margins are calibrated on inputs with known score paths (:func:`calibrate_margins`):
each is the smallest margin at which no calibration input's early verdict would differ from
its full-I verdict. That is the stated error bound: 0 disagreements on the n calibration
inputs, a 95 % upper bound of about 3/n on the rate of disagreement (rule of three).

Draws in chunks need a recogniser that computes a subset of its realisations
(``realization_log_probs(..., indices=...)``, the CTC model); others draw all I at once.

Example:
    >>> margins = calibrate_margins([[-0.1, 0.3, 0.5], [-2.0, -2.1, -2.0]], threshold=0.0)
    >>> [round(m, 6) for m in margins]   # the first path was wrong after one chunk, 0.1 below
    [0.1, 0.0]
    >>> decide([-2.2, -2.0, -2.1], margins, threshold=0.0)
    (-2.2, 1)
    >>> decide([0.05, 0.4, 0.6], margins, threshold=0.0)
    (0.4, 2)
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import ConfigError
from ..uncertainty.features import FeatureTable
from ..uncertainty.realizations import Realizations, mask_options

DEFAULT_CHUNK = 10


def chunk_scores(detector, waveform: np.ndarray, chunk: int = DEFAULT_CHUNK, *, upto: int | None = None,
                 precision: str = "auto") -> Callable[[int], float]:
    """``score(k)``: the detector's score from the first ``k·chunk`` of its I realisations of
    ``waveform``, drawn lazily (each chunk once) and in the fixed-I pass's order."""
    c = detector.feature_extractor.config
    if c.n % chunk:
        raise ConfigError(f"chunk {chunk} must divide the detector's I = {c.n}")
    rec = detector.recognizer
    x = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    normalize = getattr(rec, "normalize_text", None)
    options = mask_options(rec, c.masks)
    drawn: list = []

    def draw(k: int) -> None:
        if hasattr(rec, "realization_log_probs"):
            while len(drawn) < k:
                index = list(range(len(drawn) * chunk, (len(drawn) + 1) * chunk))
                with torch.no_grad():
                    log_probs, frames = rec.realization_log_probs(x, c.n, c.seed, p=c.p, precision=precision,
                                                                  indices=index, **options)
                drawn.append((log_probs.float().cpu(), frames))
        elif not drawn:  # no subset pass: all I at once, scored chunk by chunk
            full = rec.realizations(waveform, c.n, c.seed, p=c.p, **options)
            drawn.extend((full.log_probs[j:j + chunk], full.length) for j in range(0, c.n, chunk))

    def score(k: int) -> float:
        draw(k)
        log_probs = torch.cat([lp for lp, _ in drawn[:k]])
        length = drawn[0][1]
        transcripts = rec.decode(log_probs, torch.full((log_probs.shape[0],), length))
        if normalize is not None:
            transcripts = [normalize(t) for t in transcripts]
        realizations = Realizations(transcripts, log_probs, length, c.p, c.seed, c.masks)
        features = detector.feature_extractor.from_realizations(realizations)
        return float(detector.classifier.decision_function(FeatureTable.stack([features]))[0])

    return score


def decide(path, margins: Sequence[float], threshold: float) -> tuple[float, int]:
    """``(score, chunks used)``: the first chunk's score at least its margin from ``threshold``,
    else the full-I score. ``path`` is a list of scores per chunk count or ``score(k)``."""
    at = path if callable(path) else (lambda k: path[k - 1])
    for k, margin in enumerate(margins, start=1):
        s = at(k)
        if abs(s - threshold) >= margin:
            return s, k
    k = len(margins) + 1
    return at(k), k


def calibrate_margins(paths: Sequence[Sequence[float]], threshold: float) -> list[float]:
    """Per early chunk ``k``, the smallest margin that no calibration path whose verdict at ``k``
    differs from its final (full-I) verdict reaches: such a path never stops at ``k``.

    ``paths[i][k]`` is input ``i``'s score after ``k + 1`` chunks; the last is the full-I score.
    """
    paths = [list(p) for p in paths]
    if not paths or len({len(p) for p in paths}) != 1 or len(paths[0]) < 2:
        raise ConfigError("need score paths of one length (>= 2 chunks) to calibrate on")
    final = [p[-1] > threshold for p in paths]
    margins = []
    for k in range(len(paths[0]) - 1):
        wrong = [abs(p[k] - threshold) for p, f in zip(paths, final) if (p[k] > threshold) != f]
        margins.append(float(np.nextafter(max(wrong), math.inf)) if wrong else 0.0)
    return margins


__all__ = ["DEFAULT_CHUNK", "calibrate_margins", "chunk_scores", "decide"]
