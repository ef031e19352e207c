"""The rival detectors' Whisper pilot: its sets split by speaker, its cells, its report (no Whisper run here)."""

import json

import numpy as np

from asrguard.asr import recipes
from asrguard.attacks.sources import load_items
from asrguard.experiments.comparison.inputs import Entry
from asrguard.experiments.whisper_defence import speaker_role
from asrguard.experiments.whisper_rivals import (benign_sets, measure, misrecognised_ids, seed_uncertainty,
                                                 tables_markdown)

from _report_checks import auroc_cells, auroc_cells_lacking_n_and_interval


def test_the_defence_runs_benign_rows_seed_the_cache_and_its_adversarial_ones_do_not(tmp_path):
    defence = tmp_path / "features.jsonl"
    defence.write_text("".join(json.dumps({"key": k, "features": {}}) + "\n"
                               for k in ("benign:english-speech:a", "cw:english-speech:a", "dr:english-speech:a")))
    cache = tmp_path / "out" / "uncertainty.jsonl"
    cache.parent.mkdir()
    seed_uncertainty(cache, defence)
    assert [json.loads(line)["key"] for line in cache.read_text().splitlines()] == ["benign:english-speech:a"]
    cache.write_text("kept\n")
    seed_uncertainty(cache, defence)  # a run under way is never overwritten
    assert cache.read_text() == "kept\n"
    seed_uncertainty(tmp_path / "none.jsonl", None)
    assert not (tmp_path / "none.jsonl").exists()


def test_a_cell_compares_the_examples_with_their_sources_and_counts_false_alarms_per_set():
    def entries(prefix, values):
        return [Entry("x", f"{prefix}{i}", f"{prefix}{i}", lambda: None, {"score": v}) for i, v in enumerate(values)]

    sources, examples = entries("s", [0.1, 0.2, 0.3]), entries("a", [0.9, 0.25])
    held_out = {"an4": entries("h", [0.1, 0.6]), "words": entries("w", [0.0])}
    result = measure(lambda group: np.array([e.record["score"] for e in group]), sources, examples, held_out, 0.5,
                     wrong={"h1"})
    assert round(result["cw"]["auroc"], 3) == 0.833 and result["cw"]["detection_rate"] == 0.5
    assert result["false_alarms"] == {"an4": {"rate": 0.5, "n": 2}, "words": {"rate": 0.0, "n": 1}}
    # the one flagged held-out input is the one transcribed wrongly
    assert result["flagged_held_out"] == {"recognised": {"rate": 0.0, "n": 2}, "misrecognised": {"rate": 1.0, "n": 1}}
    # and against the sources plus every held-out input, a source counted once though a held-out set holds it
    held_out["words"] += sources[:1]
    pooled = measure(lambda group: np.array([e.record["score"] for e in group]), sources, examples, held_out, 0.5)
    assert pooled["cw_vs_held_out"]["n_benign"] == 6 and pooled["cw_vs_held_out"]["n_adversarial"] == 2
    assert round(pooled["cw_vs_held_out"]["auroc"], 3) == round((6 + 4) / 12, 3)  # 0.9 beats all six, 0.25 four


def test_the_report_shows_each_detector_with_n_and_interval():
    cell = {"auroc": 0.9, "auroc_ci": [0.8, 1.0], "tpr_at_1pct_fpr": 0.5, "detection_rate": 0.7,
            "n_adversarial": 24, "n_benign": 24}
    detector = {"name": "transform-max", "passes": 5, "cw": cell, "false_alarms": {"an4": {"rate": 0.1, "n": 10}}}
    results = {"settings": {"n": 24, "per_subset": 40, "target_fpr": 0.05, "cw_folder": "cw-a00adbda53fe"},
               "sizes": {"cw": 24, "calibration": 80, "held_out": {"an4": 10}},
               "attack": {"n": 24, "n_success": 24, "mean_db_x_delta": -27.4, "median_snr_db": 13.0,
                          "seconds_per_success": 25.0},
               "detectors": {"transform": detector, "uncertainty": {**detector, "name": "all-svm", "passes": 50}}}
    tables = tables_markdown(results)
    assert "| transform (transform-max) | 0.900 (0.80–1.00, n=24/24) | 50.0 | – | – | 70.0 | 5 | 10.0 |" in tables
    assert "transcribed right" not in tables
    flagged = {"recognised": {"rate": 0.0, "n": 7}, "misrecognised": {"rate": 1 / 3, "n": 3}}
    results["misrecognised_held_out"] = {"n": 3, "of": 10, "by_set": {"an4": 3}}
    results["detectors"]["transform"]["flagged_held_out"] = flagged
    tables = tables_markdown(results)
    assert "wrongly (its normalised text unlike the reference; by set: an4 3)" in tables
    assert "| transform | 0.0 (n=7) | 33.3 (n=3) |" in tables and "| uncertainty | – | – |" in tables
    assert "worst-subset threshold" not in tables
    results["detectors"]["transform"].update(worst_subset_threshold=1.5, at_worst_subset_threshold=detector)
    assert "| transform | 1.500 | 70.0 | 10.0 |" in tables_markdown(results)
    assert "24 of 24 reached the target; mean dB_x(δ) -27.4 dB" in tables
    assert len(auroc_cells(tables)) == 2 and not auroc_cells_lacking_n_and_interval(tables)
    results["detectors"]["transform"]["cw_vs_held_out"] = {**cell, "auroc": 0.8, "n_benign": 199, "tpr_at_1pct_fpr": 0.25}
    tables = tables_markdown(results)
    assert "| 0.900 (0.80–1.00, n=24/24) | 50.0 | 0.800 (0.80–1.00, n=24/199) | 25.0 | 70.0 |" in tables
    assert not auroc_cells_lacking_n_and_interval(tables)


def test_misrecognised_ids_transcribe_only_what_the_cache_lacks(tmp_path):
    from _detect_helpers import tiny_recognizer

    recognizer = tiny_recognizer(tmp_path)
    clip = 0.1 * np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    heard = recognizer.transcribe([clip])[0]
    entries = [Entry("benign", "right", "right", lambda: clip, {"transcript": heard}),
               Entry("benign", "wrong", "wrong", lambda: clip, {"transcript": heard + " zzz"})]
    path = tmp_path / "misrecognised.json"
    assert misrecognised_ids(recognizer, entries, path) == {"wrong"}
    unreadable = [Entry("benign", e.id, e.id, lambda: 1 / 0, e.record) for e in entries]
    assert misrecognised_ids(recognizer, unreadable[:1], path) == set()  # cached: no audio read
    assert json.loads(path.read_text()) == {"checked": ["right", "wrong"], "wrong": ["wrong"]}


def test_fitting_calibration_and_held_out_speakers_never_meet(shared_data):
    sources = load_items(["english-speech"], 12, 0, shared_data, 16000, max_seconds=8.0, min_seconds=2.0)
    records = {r.id: r for r in recipes.english_speech_records(shared_data)}
    fit, calibration, held_out = benign_sets(sources, records, per_subset=2, seed=0)
    assert fit and calibration and held_out and {"speech commands words", "fsdd digits"} <= set(held_out)
    assert all(e.record["transcript"] for e in fit + calibration + [e for g in held_out.values() for e in g])

    def speakers(entries):
        ids = [e.id.split(":", 2)[2] for e in entries if e.id.startswith("benign:english-speech:")]
        return {records[i].speaker for i in ids}

    fitting, calibrating = speakers(fit), speakers(calibration)
    testing = speakers([e for g in held_out.values() for e in g])
    assert not calibrating & testing and not fitting & (calibrating | testing)
    assert all(speaker_role(s, 0) == "fit" for s in fitting)
    assert all(speaker_role(s, 0) == "calibrate" for s in calibrating)
    assert all(speaker_role(s, 0) == "test" for s in testing)


def test_a_rival_is_fitted_on_dr_only_when_it_learns_and_its_rows_are_measured_once(tmp_path, monkeypatch):
    from _detect_helpers import tiny_recognizer

    from asrguard.detect.detector import threshold_for_fpr
    from asrguard.detect.registry import make_detector
    from asrguard.detect.rivals.base import RivalDetector
    from asrguard.experiments.whisper_rivals import Rows, Sets, fit_and_measure_rival

    recognizer = tiny_recognizer(tmp_path)
    rng = np.random.default_rng(1)

    def clips(prefix, k, scale):
        waves = [np.clip(scale * rng.standard_normal(6000), -0.9, 0.9).astype(np.float32) for _ in range(k)]
        return [Entry("benign" if prefix != "dr" else "dr", f"{prefix}{i}", f"{prefix}{i}", lambda w=w: w,
                      {"transcript": ""}) for i, w in enumerate(waves)]

    calibration = clips("cal", 6, 0.05)
    for i, e in enumerate(calibration):
        e.record["subset"] = "an4" if i < 3 else "words"
    sets = Sets(fit_benign=clips("fit", 4, 0.05), dr=clips("dr", 4, 0.3), calibration=calibration,
                cw_sources=clips("src", 3, 0.05), cw=clips("cw", 3, 0.3), held_out={"an4": clips("h", 3, 0.05)},
                wrong={"h0"})
    transform = make_detector("transform", recognizer, seed=0, target_fpr=0.05)
    rows = Rows(transform, tmp_path / "features", {})
    result = fit_and_measure_rival(transform, rows, sets)
    assert result["fitted_on"] == "nothing" and result["cw"]["n_adversarial"] == result["cw"]["n_benign"] == 3
    assert result["threshold"] == threshold_for_fpr(transform.score_features(rows(sets.calibration)), 0.05)
    assert result["flagged_held_out"]["misrecognised"]["n"] == 1 and result["false_alarms"]["an4"]["n"] == 3
    # and at the shipped Whisper detector's rule: the largest of the per-subset thresholds
    calibration_scores = transform.score_features(rows(calibration))
    assert result["worst_subset_threshold"] == max(threshold_for_fpr(calibration_scores[:3], 0.05),
                                                   threshold_for_fpr(calibration_scores[3:], 0.05))
    assert result["at_worst_subset_threshold"]["cw"]["n_adversarial"] == 3

    distribution = make_detector("distribution", recognizer, seed=0, target_fpr=0.05)
    learned = fit_and_measure_rival(distribution, Rows(distribution, tmp_path / "features", {}), sets)
    assert learned["fitted_on"] == "benign and DR of the fitting speakers"
    assert distribution.metadata["n_adversarial"] == 4 and distribution.metadata["n_calibration"] == 6
    without_dr = Sets(**{**vars(sets), "dr": []})
    plain = make_detector("distribution", recognizer, seed=0, target_fpr=0.05)
    assert fit_and_measure_rival(plain, Rows(plain, tmp_path / "features", {}), without_dr)["fitted_on"] == "nothing"

    def measured_again(*args, **kwargs):
        raise AssertionError("cached rows should have been reused")

    monkeypatch.setattr(RivalDetector, "features", measured_again)
    again = Rows(make_detector("transform", recognizer, seed=0, target_fpr=0.05), tmp_path / "features", {})
    again.measure(sets.calibration + sets.cw, progress=False, label="transform")
    assert np.array_equal(again(sets.cw), rows(sets.cw))


def test_the_pilot_refuses_empty_sizes_before_any_work(tmp_path):
    import pytest

    from asrguard.errors import ConfigError
    from asrguard.experiments.whisper_rivals import run

    for bad in ({"n": 0}, {"per_subset": 0}, {"n_fit": 0}, {"max_per_set": 0}):
        with pytest.raises(ConfigError, match="must be >= 1"):
            run(tmp_path / "out", progress=False, **bad)
    assert not (tmp_path / "out").exists()
