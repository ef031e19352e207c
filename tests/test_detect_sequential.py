"""Sequential realisations: chunks draw the fixed-I pass's realisations, margins never flip a calibration verdict."""

import numpy as np
import pytest

from asrguard.audio import load_audio
from asrguard.defaults import EXAMPLE_AUDIO, load_detector
from asrguard.detect.sequential import calibrate_margins, chunk_scores, decide
from asrguard.errors import ConfigError


def test_all_chunks_give_the_fixed_i_score_and_fewer_chunks_another():
    detector = load_detector()
    waveform, _ = load_audio(EXAMPLE_AUDIO, detector.recognizer.sample_rate)
    score = chunk_scores(detector, waveform, 10)
    assert score(5) == pytest.approx(detector.score(waveform), abs=1e-6)  # the same 50 realisations
    assert score(1) != pytest.approx(score(5), abs=1e-6)
    with pytest.raises(ConfigError, match="must divide"):
        chunk_scores(detector, waveform, 7)


def test_calibrated_margins_never_flip_a_calibration_verdict():
    rng = np.random.default_rng(0)
    final = rng.normal(0, 2, 300)
    # paths converge on their final score as chunks accumulate
    paths = [[f + rng.normal(0, 1.5 / k) for k in (1, 2, 3, 4)] + [f] for f in final]
    margins = calibrate_margins(paths, threshold=0.3)
    assert len(margins) == 4 and all(m >= 0 for m in margins)
    used = []
    for path in paths:
        score, k = decide(path, margins, threshold=0.3)
        assert (score > 0.3) == (path[-1] > 0.3)
        used.append(k)
    assert np.mean(used) < 5  # most paths stop early
    assert decide(paths[0], [float("inf")] * 4, 0.3) == (paths[0][-1], 5)  # infinite margins: the fixed-I score


def test_calibration_needs_paths_of_one_length():
    with pytest.raises(ConfigError):
        calibrate_margins([[0.1, 0.2], [0.3]], 0.0)


def test_the_experiment_scores_with_another_mask_seed_without_touching_the_detector():
    from asrguard.experiments.sequential import parse_seeds
    detector = load_detector()
    waveform, _ = load_audio(EXAMPLE_AUDIO, detector.recognizer.sample_rate)
    own = detector.feature_extractor.config.seed
    other = detector.copy_with_seed(own + 1)
    assert other.feature_extractor.config.seed == own + 1 and detector.feature_extractor.config.seed == own
    assert other.classifier is detector.classifier and other.threshold == detector.threshold
    assert other.score(waveform) != pytest.approx(detector.score(waveform), abs=1e-6)
    assert parse_seeds(None, own) == [own] and parse_seeds("0, 3,5", own) == [0, 3, 5]
    for bad in ("1,1", "a,2", ""):
        with pytest.raises(ConfigError, match="mask-seeds"):
            parse_seeds(bad, own)
