"""Balanced dropout masks: each unit dropped exactly p·B times per block of B realisations, drawn the same
whichever way the realisations are asked for, and carried by the feature config and saved detectors."""

import numpy as np
import pytest
import torch

from asrguard.asr.ctc import CTCConfig, CTCRecognizer, balanced_block, realization_keep_masks
from asrguard.errors import ConfigError
from asrguard.uncertainty.features import FeatureExtractor
from asrguard.uncertainty.realizations import draw_realizations, draw_realizations_batch


def test_each_unit_is_dropped_exactly_p_b_times_per_block_and_masks_extend(monkeypatch):
    import asrguard.asr.ctc.masks as ctc

    monkeypatch.setattr(ctc, "_mask_cache", {})
    for p, n, block, dropped in ((0.1, 50, 10, 1), (0.2, 20, 5, 1), (0.3, 20, 10, 3)):
        assert balanced_block(p, n) == (block, dropped)
        (kept,), keep = realization_keep_masks(40, n, [7], p, seed=2, scheme="balanced")
        assert keep == pytest.approx(1 - p)
        per_block = (~kept).view(40, n // block, block, 7).sum(dim=2)
        assert per_block.unique().tolist() == [dropped]
        # which realisation drops a unit is random: every position in a block gets drops
        assert (~kept).view(40, n // block, block, 7).sum(dim=(0, 1, 3)).min() > 0
    # a longer utterance's masks extend a shorter one's, however the cache grew
    short, _ = realization_keep_masks(9, 50, [5, 3], 0.1, seed=4, scheme="balanced")
    monkeypatch.setattr(ctc, "_mask_cache", {})
    long, _ = realization_keep_masks(300, 50, [5, 3], 0.1, seed=4, scheme="balanced")
    assert all(torch.equal(s, lo[:9]) for s, lo in zip(short, long))
    other, _ = realization_keep_masks(9, 50, [5, 3], 0.1, seed=5, scheme="balanced")
    assert not torch.equal(other[0], short[0])
    iid, _ = realization_keep_masks(9, 50, [5, 3], 0.1, seed=4)
    assert not torch.equal(iid[0], short[0])


def test_impossible_balanced_settings_are_refused():
    with pytest.raises(ConfigError, match="balanced masks need"):
        balanced_block(0.13, 50)
    with pytest.raises(ConfigError, match="balanced masks need"):
        realization_keep_masks(5, 7, [4], 0.1, seed=0, scheme="balanced")  # no block of 10 divides 7
    with pytest.raises(ConfigError, match="mask scheme"):
        realization_keep_masks(5, 10, [4], 0.1, seed=0, scheme="sobol")
    with pytest.raises(ConfigError, match="masks must be"):
        FeatureExtractor(masks="sobol")


def test_balanced_realizations_agree_single_batched_and_by_subset():
    rec = CTCRecognizer(CTCConfig(dense_size=16, lstm_size=8))
    rng = np.random.default_rng(0)
    short, long = (0.1 * rng.standard_normal(k).astype(np.float32) for k in (3200, 8000))
    alone = draw_realizations(rec, long, 20, p=0.1, seed=3, masks="balanced")
    batched = draw_realizations_batch(rec, [short, long], 20, p=0.1, seed=3, masks="balanced")[1]
    assert alone.masks == batched.masks == "balanced"
    assert torch.allclose(alone.log_probs.float(), batched.log_probs.float(), atol=2e-2)
    subset, _ = rec.realization_log_probs(torch.from_numpy(long), 20, 3, p=0.1, indices=[10, 11], masks="balanced")
    assert torch.allclose(subset.float(), alone.log_probs[10:12].float(), atol=2e-2)
    iid = draw_realizations(rec, long, 20, p=0.1, seed=3)
    assert not torch.allclose(iid.log_probs.float(), alone.log_probs.float())


def test_the_scheme_travels_with_extractors_and_saved_detectors(tmp_path):
    from asrguard.detect.registry import load_detector, make_detector

    assert "masks" not in FeatureExtractor().to_dict()  # iid configs read as before
    balanced = FeatureExtractor(n=20, masks="balanced")
    assert FeatureExtractor.from_dict(balanced.to_dict()).config == balanced.config
    assert FeatureExtractor.from_dict({"n": 20, "p": 0.1, "seed": 0, "max_distance": 5}).config.masks == "iid"
    rec = CTCRecognizer(CTCConfig(dense_size=16, lstm_size=8))
    det = make_detector("uncertainty", rec, n=20, masks="balanced")
    assert det.set_mask_seed(7).feature_extractor.config.masks == "balanced"
    combined = make_detector("combined", rec, n=20, masks="balanced")
    assert combined.settings()["masks"] == "balanced" and combined.extractor.config.masks == "balanced"
    assert "masks" not in make_detector("combined", rec, n=20).settings()
    rng = np.random.default_rng(1)
    benign = [0.05 * rng.standard_normal(4000).astype(np.float32) for _ in range(6)]
    adversarial = [0.2 * rng.uniform(-1, 1, 4000).astype(np.float32) for _ in range(6)]
    det.fit(benign, adversarial).save(tmp_path / "guard")
    loaded = load_detector(tmp_path / "guard", rec, allow_unverified=True)  # an unsaved tiny model has no checksum
    assert loaded.feature_extractor.config.masks == "balanced"
    assert loaded.score(benign[0]) == pytest.approx(det.score(benign[0]), abs=1e-6)
