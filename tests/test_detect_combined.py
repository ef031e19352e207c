"""The combined detector: dropout-uncertainty features and rival transcript distances in one SVM."""

import numpy as np
import pytest

from asrguard.detect.classifiers import signed_log1p
from asrguard.detect.combined import CombinedDetector, UNCERTAINTY_GROUPS
from asrguard.detect.registry import load_detector, make_detector
from asrguard.detect.rivals import NoiseFloodDetector, TransformDetector
from asrguard.errors import ConfigError, MissingCapabilityError
from asrguard.evaluate.detection import auroc
from asrguard.uncertainty.features import FeatureExtractor, FeatureTable
from _detect_helpers import TranscribeOnly, clips, tiny_recognizer


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory):
    return tiny_recognizer(tmp_path_factory.mktemp("combined"))


def test_its_features_are_the_separate_detectors_features_side_by_side(recognizer):
    det = CombinedDetector(recognizer, n=6, p=0.3, seed=2)
    x = clips(1, 3, noisy=True)[0]
    row = det.features(x)
    uncertainty = FeatureExtractor(n=6, p=0.3, seed=2)(recognizer, x)
    transform = TransformDetector(recognizer, seed=2).features(x)
    noise = NoiseFloodDetector(recognizer, seed=2).features(x)
    width = FeatureTable.stack([uncertainty]).matrix(UNCERTAINTY_GROUPS).shape[1]
    assert len(row) == len(det.feature_names) == width + len(transform) + len(noise)
    np.testing.assert_allclose(row[:width], signed_log1p(FeatureTable.stack([uncertainty]).matrix(UNCERTAINTY_GROUPS))[0])
    np.testing.assert_array_equal(row[width:], np.r_[transform, noise])
    # features measured by the separate detectors combine into the same row
    np.testing.assert_allclose(det.join(uncertainty, {"transform": transform, "noise-flood": noise})[0], row)
    assert det.passes == 6 + 1 + 4 + 4


def test_fits_separates_and_survives_a_save_and_load(recognizer, tmp_path):
    det = make_detector("combined", recognizer, n=6, p=0.3, members="transform", target_fpr=0.2)
    assert det.fit(clips(8, 0), clips(8, 1, noisy=True)) is det
    benign, adversarial = clips(6, 20), clips(6, 21, noisy=True)
    scores = [det.score(x) for x in benign + adversarial]
    assert auroc(np.r_[np.zeros(6), np.ones(6)], scores) >= 0.9
    assert det.coef_.shape == (len(det.feature_names),) and [n.split(":")[0] for n in det.feature_names][-1] == "transform"
    again = load_detector(det.save(tmp_path / "combined"), recognizer)
    assert isinstance(again, CombinedDetector) and again.settings() == det.settings()
    assert [again.score(x) for x in benign + adversarial] == scores
    info = again.explain(adversarial[0])
    assert info["classifier"] == "combined-svm" and info["realizations"] == again.passes == 6 + 1 + 4
    assert sum(c["what"].startswith("dropout realisation") for c in info["evidence"]["compared"]) == 6


def test_refuses_what_it_cannot_do(recognizer):
    with pytest.raises(ConfigError, match="needs adversarial examples"):  # said before any audio is read
        CombinedDetector(recognizer, n=4, p=0.3).fit(["no such file.wav"])
    with pytest.raises(ConfigError, match="needs adversarial examples"):
        CombinedDetector(recognizer, n=4, p=0.3).fit_features(np.zeros((3, 21)))
    with pytest.raises(ConfigError, match="members must be distinct names"):
        CombinedDetector(recognizer, members=("transform", "temporal"))
    with pytest.raises(ConfigError, match=r"p \(dropout rate\)"):
        CombinedDetector(recognizer, p=1.5)
    with pytest.raises(ConfigError, match="C must be positive"):
        CombinedDetector(recognizer, C=0)
    with pytest.raises(MissingCapabilityError, match="stochastic"):
        CombinedDetector(TranscribeOnly(recognizer))
    det = CombinedDetector(recognizer, n=4, p=0.3)
    with pytest.raises(ConfigError, match="rows of member 'noise-flood' are missing"):
        det.join(FeatureExtractor(n=4, p=0.3)(recognizer, clips(1, 0)[0]), {"transform": np.zeros(4)})


def test_a_new_seed_reaches_the_masks_and_the_members(recognizer):
    det = CombinedDetector(recognizer, n=4, p=0.3, seed=1).set_mask_seed(9)
    assert det.extractor.config.seed == 9 and all(m.seed == 9 for m in det.members.values())
    assert det.set_mask_seed("random").reported_mask_seed == "secret"
    assert det.extractor.config.seed == det.seed and all(m.seed == det.seed for m in det.members.values())


def test_a_distance_only_ever_adds_to_the_score(recognizer):
    # fitted on an attack whose examples change *less* under one transform than benign speech does,
    # an unconstrained SVM weights that distance below zero, and an attack that changes a lot under
    # it would then look benign; the detector drops such a distance and refits
    det = CombinedDetector(recognizer, n=4, p=0.3, members=("transform",), seed=1)
    names = det.feature_names
    lower, higher = names.index("transform:distance_quantize"), names.index("transform:distance_lpc")
    rng = np.random.default_rng(0)
    benign, adversarial = rng.normal(0.0, 1.0, (40, len(names))), rng.normal(0.0, 1.0, (40, len(names)))
    adversarial[:, 0] += 2.0  # an uncertainty feature that separates
    adversarial[:, higher] += 2.0
    adversarial[:, lower] -= 2.0  # lower distances under this transform on the fitting attack
    det.fit_features(benign, adversarial)
    distances = [j for j, name in enumerate(names) if not name.startswith("uncertainty:")]
    assert all(det.coef_[j] >= 0 for j in distances)
    assert det.coef_[lower] == 0 and "transform:distance_quantize" in det.metadata["distances_dropped"]
    assert det.coef_[higher] > 0 and det.coef_[0] > 0
    # an input far out on the dropped distance scores no lower for it
    x = np.zeros(len(names))
    far = x.copy()
    far[lower] = 25.0
    assert det.score_features(far[None])[0] == pytest.approx(det.score_features(x[None])[0])
