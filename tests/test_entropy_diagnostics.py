"""The pieces of the entropy diagnostics that do not need a trained run or real data."""

import numpy as np
import torch

from asrguard.asr.hybrid.acoustic import build_acoustic_model
from asrguard.asr.hybrid.hmm import DigitHMM
from asrguard.asr.hybrid.recognizer import HybridRecognizer
from asrguard.experiments.entropy_diagnostics import REDUCTIONS, frame_entropies, markdown_table, reduce_all


def _audio(seed, n):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return ((0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.normal(size=n)) * np.hanning(n)).astype(np.float32)


def test_reductions_of_a_spike_and_a_plateau():
    spike, plateau = np.array([0.1, 0.1, 3.0, 0.1, 0.1, 0.1]), np.full(6, 0.9)
    out = reduce_all([spike, plateau])
    assert set(out) == set(REDUCTIONS)
    assert out["max"].tolist() == [3.0, 0.9]
    # a single high frame dominates the max but not the smoothed or averaged reductions
    assert out["max_smooth3"][0] < 1.1 and out["mean"][0] < out["mean"][1]
    assert out["share_above_1nat"].tolist() == [1 / 6, 0.0]
    assert np.isclose(out["top5_mean"][1], 0.9)


def test_peak_normalisation_makes_benign_entropy_independent_of_level():
    """The premise of the level check: a quieter copy of an utterance scores the same."""
    torch.manual_seed(0)
    rec = HybridRecognizer(build_acoustic_model("fnn"), DigitHMM.default())
    loud = [_audio(0, 12000), _audio(1, 16000)]
    quiet = [w * 0.1 for w in loud]
    (h_loud, t_loud), (h_quiet, t_quiet) = (frame_entropies(rec, ws, 1, seed=0) for ws in (loud, quiet))
    assert [len(h) for h in h_loud] == [len(h) for h in h_quiet] == [int(rec.frame_lengths(torch.tensor(len(w)))) for w in loud]
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(h_loud, h_quiet))
    assert t_loud == t_quiet


def test_markdown_table_has_one_row_per_setting():
    row = {"model": "fnn", "scale": 0.25, "eps": 0.05, "median_eps_relative_to_peak_db": -9.4,
           "accuracy_vs_target": 0.8, "entropy_auroc": {n: 0.5 for n in REDUCTIONS}}
    table = markdown_table([row, {**row, "scale": 1.0}])
    header = table.splitlines()[0]
    assert table.count("\n| fnn |") == 2 and all(f" {name} " in header for name in REDUCTIONS)
