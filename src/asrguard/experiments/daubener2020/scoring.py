"""How the Däubener et al. (2020) reproduction scores audio: transcripts, uncertainty, detection AUROCs.

Example:
    >>> measure_names("dropout")[:2]
    ('entropy', 'mutual_information')
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from ...asr.base import AudioBatch
from ...asr.hybrid.recognizer import HybridRecognizer
from ...detect.gaussian import OneClassGaussian
from ...evaluate.detection import auroc_interval
from ...uncertainty.measures import DETERMINISTIC_MEASURES, MEASURES, utterance_scores
from ..common import without_nan


def length_sorted_batches(n: int, size: int, lengths: Sequence[int] | None = None) -> list[np.ndarray]:
    """Indices of ``n`` items in batches of ``size``, shortest first when ``lengths`` are given.

    Example:
        >>> [b.tolist() for b in length_sorted_batches(3, 2, [30, 10, 20])]
        [[1, 2], [0]]
    """
    order = np.argsort(lengths, kind="stable") if lengths is not None else np.arange(n)
    return [order[i:i + size] for i in range(0, n, size)]


def measure_names(kind: str) -> tuple[str, ...]:
    """The uncertainty measures of a model kind: entropy only for the deterministic fNN.

    Example:
        >>> measure_names("fnn")
        ('entropy',)
    """
    return DETERMINISTIC_MEASURES if kind == "fnn" else MEASURES


def evaluate_audio(rec: HybridRecognizer, waveforms: Sequence, n_draws: int, seed: int, *,
                   batch_size: int = 8, tick: Callable[[int], None] | None = None) -> dict:
    """Transcripts (Viterbi on the mean of ``n_draws`` draws) and max-over-frames uncertainty scores.

    Example:
        >>> out = evaluate_audio(rec, waveforms, n_draws=5, seed=0)  # doctest: +SKIP
        >>> sorted(out), list(out["scores"])[:2]  # doctest: +SKIP
        (['scores', 'transcripts'], ['entropy', 'mutual_information'])
    """
    names = measure_names(rec.kind)
    transcripts: list[str | None] = [None] * len(waveforms)
    scores = {m: [math.nan] * len(waveforms) for m in names}
    lengths = [len(w) for w in waveforms]
    for index in length_sorted_batches(len(waveforms), batch_size, lengths):
        batch = AudioBatch.from_waveforms([waveforms[i] for i in index], rec.sample_rate)
        draws, frames = rec.draws(batch, n_draws, seed=seed)
        mean = torch.logsumexp(draws, dim=0) - math.log(draws.shape[0])
        texts = rec.decode(mean, frames)
        values = utterance_scores(log_probs=draws.transpose(0, 1), lengths=frames, measures=names)
        for k, i in enumerate(index):
            transcripts[i] = texts[k]
            for m in names:
                scores[m][i] = float(values[m][k])
        if tick:
            tick(len(index))
    return {"transcripts": transcripts, "scores": scores}


def detection_by_measure(benign: dict, attacked: dict, kind: str, n_benign: int | None = None) -> dict:
    """AUROC per measure of a Gaussian fitted to benign fit-set scores; ROC curves for plotting.

    ``benign`` is a benign stage (``fit`` and ``eval`` scores), ``attacked`` an attack stage (``n``
    and ``scores``).

    Example:
        >>> benign = {"fit": {"scores": {"entropy": [0.1, 0.2, 0.15]}}, "eval": {"scores": {"entropy": [0.1, 0.2]}}}
        >>> detection_by_measure(benign, {"n": 2, "scores": {"entropy": [0.9, 1.2]}}, "fnn")["entropy"]["auroc"]
        1.0
    """
    out = {}
    n = attacked["n"]
    for m in measure_names(kind):
        fit_scores = np.asarray(benign["fit"]["scores"][m])
        det = OneClassGaussian().fit(fit_scores)
        ben = np.asarray(benign["eval"]["scores"][m][:n_benign])
        adv = np.asarray(attacked["scores"][m][:n])
        fpr, tpr, _ = det.roc(ben, adv)
        labels = np.r_[np.zeros(len(ben), dtype=int), np.ones(len(adv), dtype=int)]
        interval = auroc_interval(labels, np.r_[det.score(ben), det.score(adv)])
        out[m] = {"auroc": det.auroc(ben, adv), "auroc_ci": without_nan(interval),
                  "n_benign": len(ben), "n_adversarial": len(adv),
                  "benign_mean": float(ben.mean()), "adversarial_mean": float(adv.mean()),
                  "fit_mean": float(det.mean_[0]), "fit_std": float(math.sqrt(det.covariance_[0, 0])),
                  "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()}}
    return out


def attack_row(benign: dict, attacked: dict, kind: str) -> dict:
    """One row of a results table: the attack's effect (accuracies, SNR) and AUROC per measure.

    Example:
        >>> row = attack_row(benign_stage_output, attack_stage_output, "fnn")  # doctest: +SKIP
        >>> row["auroc"]["entropy"], row["snr_db_mean"]  # doctest: +SKIP
        (0.98, 31.2)
    """
    det = detection_by_measure(benign, attacked, kind)
    snr = np.asarray(attacked["snr_db"], dtype=float)
    return {"n_adversarial": attacked["n"], "n_benign": det["entropy"]["n_benign"], "level": attacked["level"],
            "accuracy_original": attacked["accuracy_original"], "accuracy_target": attacked["accuracy_target"],
            "target_exact_match": attacked["target_exact_match"],
            "snr_db_mean": float(np.mean(snr)), "snr_db_median": float(np.median(snr)),
            "peak_median": float(np.median(attacked["peak"])),
            "auroc": {m: v["auroc"] for m, v in det.items()},
            "auroc_ci": {m: v["auroc_ci"] for m, v in det.items()},
            "entropy_mean": {"benign": det["entropy"]["benign_mean"],
                             "adversarial": det["entropy"]["adversarial_mean"]}}


__all__ = ["attack_row", "detection_by_measure", "evaluate_audio", "length_sorted_batches", "measure_names"]
