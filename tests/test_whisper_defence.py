"""The Whisper defence experiment's fitting stage: fitted on DR of the fitting speakers only, measured on held-out ones."""

import numpy as np

from asrguard.detect.detector import Detector
from asrguard.experiments.whisper_defence import (fit_and_measure, partition, ship_detector, speaker_role, subset_of,
                                                   worst_subset_threshold)
from asrguard.uncertainty.features import POSTERIOR_MEASURES, FeatureExtractor, UncertaintyFeatures

from _detect_helpers import tiny_recognizer


def features(rng, shift: float) -> UncertaintyFeatures:
    moments = rng.normal(1.0 + shift, 0.3, 4)
    return UncertaintyFeatures(transcripts=["a"], medoid="a", char_distances=np.zeros(1, int),
                               char_hist=rng.integers(0, 5, 8), char_moments=moments, prob_distances=np.zeros(1),
                               prob_moments=rng.normal(0.5, 0.1, 4),
                               measures={m: float(rng.normal(1.0 + shift, 0.3)) for m in POSTERIOR_MEASURES})


def test_classifiers_fit_on_dr_of_fitting_speakers_and_are_measured_on_held_out_speakers():
    rng = np.random.default_rng(0)
    feats, rows, split = {}, {}, {}
    for s in range(20):
        speaker = f"spk{s}"
        split[speaker] = "fit" if s < 14 else "test"
        for k in range(3):
            key = f"benign:{speaker}:{k}"
            feats[key] = features(rng, 0.0)
            rows[key] = {"kind": "benign", "speaker": speaker, "subset": "an4" if s % 2 else "common-voice",
                         "source_of_attack": k == 0}
        for attack in ("cw", "dr"):
            key = f"{attack}:{speaker}"
            feats[key] = features(rng, 2.0)  # adversarial inputs stand out in every feature here
            rows[key] = {"kind": attack, "speaker": speaker, "subset": "an4", "source_of_attack": False}
    for k in range(4):  # a held-out corpus without english_speech speakers: false alarms only
        feats[f"benign:words:{k}"] = features(rng, 0.0)
        rows[f"benign:words:{k}"] = {"kind": "benign", "speaker": None, "subset": "speech commands words",
                                     "source_of_attack": False}
    result = fit_and_measure(feats, rows, split)
    svm = result["char-svm4"]
    assert svm["n_fit_benign"] == 14 * 3 and svm["n_fit_adversarial"] == 14  # DR of the fitting speakers only
    for attack in ("cw", "dr"):
        m = svm["attacks"][attack]
        assert (m["n_adversarial"], m["n_benign"]) == (6, 6)  # held-out speakers: their examples and their sources
        assert m["auroc"] > 0.95 and len(m["auroc_ci"]) == 2
    alarms = svm["false_alarms"]
    assert alarms["speech commands words"]["n"] == 4
    assert sum(a["n"] for a in alarms.values()) == 6 * 3 + 4
    assert set(result) >= {"char-ds", "char-svmf", "char-dectree", "gaussian", "combined", "all-svm"}


def test_subsets_are_reported_by_corpus():
    assert subset_of("librispeech-test-clean") == subset_of("ljspeech") == "librispeech"
    assert subset_of("speechocean762-children") == "non-native children"
    assert subset_of("something-new") == "something-new"


def speaker_rows(rng, roles: dict, *, loud_subset: str | None = None):
    """Three benign rows per speaker (one the source of its DR and CW examples); ``loud_subset``'s
    benign speech scores higher than the rest, as children's speech or single words might."""
    feats, rows = {}, {}
    for speaker, role in roles.items():
        subset = "an4" if int(speaker[3:]) % 2 else "common-voice"
        for k in range(3):
            key = f"benign:{speaker}:{k}"
            feats[key] = features(rng, 0.8 if subset == loud_subset else 0.0)
            rows[key] = {"kind": "benign", "speaker": speaker, "subset": subset, "source_of_attack": k == 0}
        for attack in ("cw", "dr"):
            key = f"{attack}:{speaker}"
            feats[key] = features(rng, 2.0)
            rows[key] = {"kind": attack, "speaker": speaker, "subset": subset, "source_of_attack": False}
    return feats, rows


def test_speaker_roles_depend_on_the_speaker_alone_and_keep_their_shares():
    roles = [speaker_role(f"spk{i}", 0) for i in range(2000)]
    assert abs(roles.count("test") / 2000 - 0.30) < 0.04 and abs(roles.count("calibrate") / 2000 - 0.15) < 0.03
    assert [speaker_role(f"spk{i}", 0) for i in range(50)] == roles[:50]  # adding speakers never moves one
    assert roles != [speaker_role(f"spk{i}", 1) for i in range(2000)]


def test_calibration_speakers_set_thresholds_and_are_neither_fitted_nor_tested():
    rng = np.random.default_rng(1)
    roles = {f"spk{s}": ("fit" if s < 10 else "calibrate" if s < 14 else "test") for s in range(20)}
    feats, rows = speaker_rows(rng, roles)
    rows["benign:words-train:0"] = {"kind": "benign", "speaker": "w:0", "subset": "words", "source_of_attack": False,
                                    "role": "calibrate"}  # a row's own role wins over the speaker split
    feats["benign:words-train:0"] = features(rng, 0.0)
    parts = partition(rows, roles)
    assert len(parts["fit_benign"]) == 30 and len(parts["fit_adversarial"]) == 10
    assert len(parts["calibration"]) == 4 * 3 + 1
    assert len(parts["held_out_benign"]) == 6 * 3 and "words" not in {rows[k]["subset"] for k in parts["held_out_benign"]}
    assert fit_and_measure(feats, rows, roles)["char-svm4"]["n_calibration"] == 13


def test_worst_subset_threshold_protects_the_subset_that_scores_highest():
    scores = np.r_[np.linspace(0, 1, 20), np.linspace(1, 2, 20)]
    subsets = ["adults"] * 20 + ["children"] * 20
    t = worst_subset_threshold(scores, subsets, 0.05)
    assert np.mean(scores[20:] > t) <= 0.05 and np.mean(scores[:20] > t) == 0.0


def test_the_shipped_detector_is_saved_loaded_and_measured_with_the_worst_subset_threshold(tmp_path):
    rng = np.random.default_rng(2)
    roles = {f"spk{s}": ("fit" if s < 24 else "calibrate" if s < 32 else "test") for s in range(40)}
    feats, rows = speaker_rows(rng, roles, loud_subset="an4")
    recognizer = tiny_recognizer(tmp_path)
    shipped = ship_detector(feats, rows, roles, recognizer, FeatureExtractor(n=8, p=0.1, seed=0), tmp_path / "det")
    loaded = Detector.load(tmp_path / "det", recognizer)
    assert loaded.classifier.name == "all-svm" and loaded.threshold == shipped["threshold"]
    assert shipped["threshold"] >= shipped["pooled_threshold"]  # the louder subset sets it
    assert loaded.metadata["calibration_subsets"] == {"an4": 12, "common-voice": 12}
    calibration = [k for k in partition(rows, roles)["calibration"] if rows[k]["subset"] == "an4"]
    flagged = [loaded.score_features(feats[k])[0] > loaded.threshold for k in calibration]
    assert np.mean(flagged) <= 0.05
    assert shipped["attacks"]["dr"]["n_adversarial"] == 8 and shipped["attacks"]["dr"]["auroc"] > 0.9
    assert set(shipped["false_alarms"]) == {"an4", "common-voice"}
