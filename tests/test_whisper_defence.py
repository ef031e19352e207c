"""The Whisper defence experiment's fitting stage: fitted on DR of the fitting speakers only, measured on held-out ones."""

import numpy as np

from asrguard.experiments.whisper_defence import fit_and_measure, subset_of
from asrguard.uncertainty.features import POSTERIOR_MEASURES, UncertaintyFeatures


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
