"""The dropout-uncertainty detector's verdict-asking adaptive attacker (``dropout-evasion``), on a tiny
random CTC model and a detector fitted on tiny audio."""

import numpy as np
import pytest
import torch

from asrguard.asr.base import AudioBatch
from asrguard.attacks.dropout_evasion import DropoutEvasionAttack, DropoutEvasionConfig
from asrguard.attacks.evasion import EOTDropoutAttack, EOTDropoutConfig
from asrguard.attacks.factory import ATTACKS, make_attack
from asrguard.audio import db
from asrguard.detect.rivals import NoiseFloodDetector
from asrguard.errors import ConfigError, MissingCapabilityError
from _detect_helpers import clips, fitted_detector, tiny_recognizer
from attack_helpers import ToyRecognizer, speechlike

TARGET = "hi"
SHORT = dict(tau_db=10.0, max_iter=8, check_every=4, learning_rate=0.2)


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    return tiny_recognizer(tmp_path_factory.mktemp("dropout-evasion"))


@pytest.fixture(scope="module")
def det(rec):
    return fitted_detector(rec, "all-svm")


def _batch(*waveforms):
    return AudioBatch.from_waveforms(list(waveforms), 16000)


def test_the_detector_copies_itself_under_another_seed(det):
    x = clips(1, 5, noisy=True)[0]
    other, same = det.copy_with_seed(11), det.copy_with_seed(0)
    assert other.feature_extractor.config.seed == 11 and det.feature_extractor.config.seed == 0
    assert (other.threshold, other.classifier.name) == (det.threshold, det.classifier.name)
    assert same.fingerprint() == det.fingerprint() != other.fingerprint()
    assert same.score(x) == det.score(x)
    moved = det.copy_with_seed(0)
    moved.threshold += 1.0
    assert moved.fingerprint() != det.fingerprint()  # the threshold is part of the identity


def test_its_objective_is_eot_dropouts_with_the_detectors_rate(rec, det):
    attack = DropoutEvasionAttack(rec, DropoutEvasionConfig(masks_per_step=3, gamma=0.5, **SHORT), detector=det)
    same = EOTDropoutAttack(rec, EOTDropoutConfig(p=det.feature_extractor.config.p, masks_per_step=3, gamma=0.5,
                                                  **SHORT))
    x = speechlike(0.5, seed=9)
    with torch.no_grad():
        ours = [float(attack.objective(_batch(x), [TARGET], s)[0]) for s in (0, 0, 1)]
        assert ours[0] == pytest.approx(float(same.objective(_batch(x), [TARGET], 0)[0]))
    assert ours[0] == ours[1] != ours[2]  # fresh masks every step, the same ones for the same step
    result = attack.generate([x], [TARGET])[0]
    assert db(result.waveform.astype(np.float64) - x) <= db(x) - SHORT["tau_db"] + 1e-3  # CW's bound
    assert result.extra["uncertainty_flagged"] == (result.extra["uncertainty_score"] > det.threshold)


def test_success_asks_the_attackers_own_copy_of_the_detector(rec, det, tmp_path):
    attack = DropoutEvasionAttack(rec, DropoutEvasionConfig(**SHORT), detector=det)
    assert attack.detector is not det
    assert attack.detector.feature_extractor.config.seed != det.feature_extractor.config.seed
    assert attack.detector.copy_with_seed(0).fingerprint() == det.fingerprint()
    x = speechlike(0.5, seed=8)
    said = rec.transcribe([x])[0]
    attack.detector.threshold = np.inf
    assert attack.is_success(_batch(x), [said], 0).tolist() == [True]
    attack.detector.threshold = -np.inf  # flags everything: the target alone no longer counts
    assert attack.is_success(_batch(x), [said], 0).tolist() == [False]
    assert attack.is_success(_batch(x), [said + "x"], 0).tolist() == [False]
    score = attack.detector.score(x)
    wary = DropoutEvasionAttack(rec, DropoutEvasionConfig(score_margin=1.0, **SHORT), detector=det)
    attack.detector.threshold = wary.detector.threshold = score + 0.5
    assert attack.is_success(_batch(x), [said], 0).tolist() == [True]
    assert wary.is_success(_batch(x), [said], 0).tolist() == [False]
    # by folder through the factory, or in memory by fingerprint (which joins the config hash)
    built = make_attack("dropout-evasion", rec, {"detector": str(det.save(tmp_path / "det")), "gamma": "0.25"})
    assert built.config.gamma == 0.25 and built.detector.copy_with_seed(0).fingerprint() == det.fingerprint()
    assert "dropout-evasion" in ATTACKS
    other = fitted_detector(rec, "char-svm4")
    assert DropoutEvasionAttack(rec, detector=other).config_hash != DropoutEvasionAttack(rec, detector=det).config_hash


def test_it_refuses_a_missing_unfitted_or_other_detector_and_bad_settings(rec, det):
    with pytest.raises(ConfigError, match="needs a fitted uncertainty detector"):
        make_attack("dropout-evasion", rec)
    flood = NoiseFloodDetector(rec, snr_db=(30.0,), draws=1, target_fpr=0.2).fit(clips(4, 0))
    with pytest.raises(ConfigError, match="needs a fitted uncertainty detector"):
        DropoutEvasionAttack(rec, detector=flood)
    from asrguard.detect.detector import Detector
    with pytest.raises(ConfigError, match="needs a fitted uncertainty detector"):
        DropoutEvasionAttack(rec, detector=Detector(rec))
    for bad in (dict(beta=-1.0), dict(gamma=-0.1), dict(score_margin=-0.1), dict(masks_per_step=0),
                dict(gamma=0.5, masks_per_step=1)):
        with pytest.raises(ConfigError):
            DropoutEvasionConfig(**bad)
    toy = ToyRecognizer()

    class LossOnly:  # transcripts and a loss, like an ART estimator: no dropout to draw
        sample_rate = 16000
        transcribe, fingerprint, normalize_text, loss, target_fits = (
            toy.transcribe, toy.fingerprint, toy.normalize_text, toy.loss, toy.target_fits)

    with pytest.raises(MissingCapabilityError, match="dropout-evasion attack needs a recogniser with stochastic"):
        DropoutEvasionAttack(LossOnly(), detector=det)
