"""`asrguard compare-detectors`: metrics, the report, and a whole comparison on a tiny finished run."""

import json
import shutil

import numpy as np
import pytest

from asrguard.errors import ConfigError
from asrguard.experiments.comparison import adaptive_summary, cell_metrics, compare, distortion
from asrguard.experiments.comparison.adaptive import SCHEDULE
from asrguard.experiments.comparison.inputs import Entry, misrecognised
from asrguard.experiments.comparison.report import tables_markdown
from _detect_helpers import finished_attack_folders, tiny_recognizer
from _report_checks import auroc_cells, auroc_cells_lacking_n_and_interval


def test_cell_metrics_count_detections_above_the_threshold_only():
    m = cell_metrics(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.9, 0.8, 0.35]), threshold=0.5)
    assert m["n_benign"] == 4 and m["n_adversarial"] == 3
    assert m["detection_rate"] == pytest.approx(2 / 3)
    assert m["auroc"] == pytest.approx(11 / 12)  # 0.35 beats three of the four benign scores
    low, high = m["auroc_ci"]
    assert low <= m["auroc"] <= high


def test_adaptive_summary_counts_evasions_and_compares_distortion_with_cw_on_the_same_sources():
    rows = [{"db_x_delta": -30.0, "snr_db": 20.0}, {"db_x_delta": -20.0, "snr_db": 10.0}]
    entries = [Entry("adaptive", f"s{i}", f"s{i}", lambda: np.zeros(4), r) for i, r in enumerate(rows)]
    cw = {"s0": {"db_x_delta": -35.0, "snr_db": 25.0}, "s1": {"db_x_delta": -33.0, "snr_db": 23.0}}
    summary = adaptive_summary(np.array([0.2, 0.9]), entries, attempted=4, threshold=0.5,
                               benign=np.array([0.0, 0.1]), cw_rows=cw)
    assert (summary["attempted"], summary["reached_target"], summary["evaded"]) == (4, 2, 1)
    assert summary["evasion_rate"] == 0.25
    assert summary["distortion_evading"] == {"mean_db_x_delta": -30.0, "median_snr_db": 20.0, "n": 1}
    assert summary["distortion_cw_same_sources"]["mean_db_x_delta"] == -34.0
    # what evading cost, paired by source: s0 evades at -30 dB where CW needed -35 dB
    assert summary["extra_db_evading_paired"] == {"mean": 5.0, "median": 5.0, "n": 1}
    none = adaptive_summary(np.array([0.9, 0.9]), entries, attempted=4, threshold=0.5, benign=np.array([0.0, 0.1]),
                            cw_rows=cw)
    assert none["extra_db_evading_paired"] == {"mean": None, "median": None, "n": 0}
    assert distortion([]) == {"mean_db_x_delta": None, "median_snr_db": None, "n": 0}
    assert "vs_held_out_auroc" not in summary
    # against every held-out benign utterance: 0.2 is above one of the three, 0.9 above all
    wider = adaptive_summary(np.array([0.2, 0.9]), entries, attempted=4, threshold=0.5, benign=np.array([0.0, 0.1]),
                             cw_rows=cw, held_out=np.array([0.0, 0.3, 0.4]))
    assert wider["vs_benign_auroc"] == 1.0 and wider["vs_held_out_auroc"] == pytest.approx(4 / 6)
    assert wider["vs_held_out_n_benign"] == 3


def test_misrecognised_lists_the_benign_inputs_whose_transcript_differs_from_the_reference(tmp_path):
    recognizer = tiny_recognizer(tmp_path)
    rng = np.random.default_rng(0)
    clips = [0.1 * rng.standard_normal(8000).astype(np.float32) for _ in range(3)]
    heard = recognizer.transcribe(clips)
    # the reference as the recogniser hears it (case and spacing aside), and one it cannot have heard
    entries = [Entry("benign", "a", "a", lambda: clips[0], {"transcript": f"  {heard[0].upper()} "}),
               Entry("benign", "b", "b", lambda: clips[1], {"transcript": heard[1] + " zzz"}),
               Entry("benign", "c", "c", lambda: clips[2], {"transcript": heard[2]})]
    assert misrecognised(recognizer, entries, batch_size=2) == ["b"]
    assert misrecognised(recognizer, []) == []


def test_compare_refuses_unknown_detectors_and_unfinished_runs_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="unknown detector kind"):
        compare(tmp_path / "out", run_dir=tmp_path, kinds=("fast",), progress=False)
    with pytest.raises(ConfigError, match="no results.json"):
        compare(tmp_path / "out", run_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="not compared"):
        compare(tmp_path / "out", run_dir=tmp_path, kinds=("temporal",), adaptive={"transform": [tmp_path]},
                progress=False)
    with pytest.raises(ConfigError, match="mask_seed"):
        compare(tmp_path / "out", run_dir=tmp_path, craft_adaptive=2, mask_seed=1, progress=False)
    for settings in ({"uncertainty": {"n": 8}}, {"transform": {"measure": "likelihood"}}):  # the latter: not compared
        with pytest.raises(ConfigError, match="settings are for"):
            compare(tmp_path / "out", run_dir=tmp_path, kinds=("uncertainty", "temporal"), settings=settings,
                    progress=False)
    for settings in ({"temporal": {"target_fpr": 0.1}}, {"combined": {"n": 8}}):
        with pytest.raises(ConfigError, match="the comparison sets"):
            compare(tmp_path / "out", run_dir=tmp_path, kinds=("temporal", "combined"), settings=settings,
                    progress=False)


def test_the_cli_reads_kind_dot_setting_pairs():
    from asrguard.cli.compare import _settings_option
    from asrguard.cli.detect import parse_settings

    assert _settings_option(["transform.measure=likelihood", "transform.reduce=mean",
                             "combined.transform_measure=likelihood"], parse_settings) == {
        "transform": {"measure": "likelihood", "reduce": "mean"}, "combined": {"transform_measure": "likelihood"}}
    for bad in ("measure=likelihood", "transform.measure", ".measure=likelihood"):
        with pytest.raises(ConfigError, match="KIND.KEY=VALUE"):
            _settings_option([bad], parse_settings)


def test_compare_on_a_tiny_finished_run_fills_every_cell_and_resumes(tmp_path, shared_data, monkeypatch):
    from asrguard.attacks.sources import load_items
    from asrguard.detect.rivals.base import RivalDetector
    from asrguard.experiments.jayashankar2020 import Settings, run

    recognizer = tiny_recognizer(tmp_path)
    settings = Settings(corpora=("fsdd-digits",), n_sources=12, n_realizations=8, test_fraction=0.5)
    items = load_items(list(settings.corpora), settings.n_sources, settings.seed, shared_data, 16000)
    finished_attack_folders(tmp_path / "attacks", recognizer, settings, items)
    run(tmp_path / "run", settings=settings, attacks=["dr", "cw"], model=tmp_path / "model0", data_root=shared_data,
        attacks_dir=tmp_path / "attacks", progress=False)
    cw_folder = next((tmp_path / "attacks").glob("cw-*"))

    out = tmp_path / "compare"
    kinds = ("uncertainty", "temporal", "distribution", "combined")
    results = compare(out, run_dir=tmp_path / "run", kinds=kinds, adaptive={"temporal": [cw_folder]},
                      craft_adaptive=2, adaptive_max_iter=3, n_english=2, n_calibration=4, n_benign_pool=4,
                      progress=False)
    n_test = json.loads((tmp_path / "run" / "results.json").read_text())["split"]["n_test_sources"]
    assert set(results["cells"]) == set(kinds)
    for kind in kinds:
        assert set(results["cells"][kind]) == {"cw", "dr"}
        assert results["cells"][kind]["cw"]["n_adversarial"] == results["cells"][kind]["cw"]["n_benign"] == n_test
        assert np.isfinite(results["detectors"][kind]["threshold"])
        alarms = results["false_alarms"][kind]
        assert alarms["fsdd-digits"]["n"] == n_test and alarms["english-speech"]["n"] == 2
        assert all(0.0 <= a["rate"] <= 1.0 for a in alarms.values())
    # each speech cell again without the benign sources the recogniser gets wrong
    wrong = results["misrecognised_test_benign"]
    assert wrong["of"] == n_test and wrong["n"] == len(wrong["ids"]) <= n_test
    for kind in kinds:
        for attack in ("cw", "dr"):
            right = results["cells"][kind][attack]["recognised_benign"]
            assert right["n_benign"] == n_test - wrong["n"]
        flagged = results["flagged_test_benign"][kind]
        assert flagged["recognised"]["n"] == n_test - wrong["n"] and flagged["misrecognised"]["n"] == wrong["n"]
    # ... and against their sources plus four more held-out benign utterances, none a source or a calibration input
    pool = results["misrecognised_benign_pool"]
    assert results["sizes"]["benign_pool"] == pool["of"] == 4 and 0 <= pool["n"] <= 4
    for kind in kinds:
        for attack in ("cw", "dr"):
            cell = results["cells"][kind][attack]
            assert cell["benign_pool"]["n_benign"] == n_test + 4
            assert cell["benign_pool_recognised"]["n_benign"] == n_test - wrong["n"] + 4 - pool["n"]
            assert cell["benign_pool"]["n_adversarial"] == cell["n_adversarial"]
        flagged = results["flagged_benign_pool"][kind]
        assert flagged["recognised"]["n"] + flagged["misrecognised"]["n"] == 4
    assert results["detectors"]["uncertainty"]["passes"] == 8  # the run's realisations, not the default 50
    assert results["detectors"]["distribution"]["passes"] == 1
    assert results["detectors"]["combined"]["passes"] == 8 + 1 + 4 + 4  # realisations, the input, the copies
    adaptive = results["adaptive"]["temporal"][cw_folder.name]
    cw_config = {k: v for k, v in json.loads((cw_folder / "run.json").read_text())["config"].items() if k in SCHEDULE}
    assert set(cw_config) == set(SCHEDULE)
    assert adaptive["attempted"] == adaptive["reached_target"] == n_test
    assert 0 <= adaptive["evaded"] <= n_test
    # each detector's own attacker ran on two test sources, toward CW's targets, under CW's bound
    for kind, attack in (("uncertainty", "dropout-evasion"), ("distribution", "stats-penalty"),
                         ("combined", "combined-evasion")):
        (name, crafted), = results["adaptive"][kind].items()
        assert name.startswith(attack + "-") and crafted["attempted"] == 2
        rows = [json.loads(line) for line in (out / "adaptive" / name / "manifest.jsonl").read_text().splitlines()]
        assert {r["target"] for r in rows} == {"go"} and len(rows) == 2
        # ... with CW's budget and schedule, but the steps asked for
        config = json.loads((out / "adaptive" / name / "run.json").read_text())["config"]
        assert {k: config[k] for k in cw_config if k != "max_iter"} == {k: v for k, v in cw_config.items() if k != "max_iter"}
        assert config["max_iter"] == 3
    # temporal has the folder it was given and its own attacker's
    (name, crafted), = ((n, v) for n, v in results["adaptive"]["temporal"].items() if n != cw_folder.name)
    assert name.startswith("prefix-consistent-") and crafted["attempted"] == 2
    tables = (out / "tables.md").read_text()
    assert "## Adaptive attackers" in tables and "english-speech" in tables
    assert auroc_cells(tables) and not auroc_cells_lacking_n_and_interval(tables)

    # a setting reaches the detector, and its own attacker aims at its score
    likelihood = compare(tmp_path / "compare_likelihood", run_dir=tmp_path / "run", kinds=("transform",),
                         settings={"transform": {"measure": "likelihood", "reduce": "mean"}}, craft_adaptive=2,
                         adaptive_max_iter=3, n_english=0, n_calibration=4, n_benign_pool=0, progress=False)
    assert likelihood["detectors"]["transform"]["settings"]["measure"] == "likelihood"
    (name, crafted), = likelihood["adaptive"]["transform"].items()
    config = json.loads((tmp_path / "compare_likelihood" / "adaptive" / name / "run.json").read_text())["config"]
    assert config["measure"] == "likelihood" and config["score_limit"] == likelihood["detectors"]["transform"]["threshold"]

    def measured_again(*args, **kwargs):
        raise AssertionError("cached features should have been reused")

    monkeypatch.setattr(RivalDetector, "features", measured_again)
    again = compare(out, run_dir=tmp_path / "run", kinds=kinds, adaptive={"temporal": [cw_folder]},
                    craft_adaptive=2, adaptive_max_iter=3, n_english=2, n_calibration=4, n_benign_pool=4,
                    progress=False)
    assert again["cells"] == results["cells"] and again["false_alarms"] == results["false_alarms"]
    assert again["adaptive"] == results["adaptive"]

    # other dropout masks: only the uncertainty features move (drawn into the run's cache under that seed;
    # the combined detector's other members are still read from the cache)
    other = compare(out, run_dir=tmp_path / "run", kinds=("uncertainty", "combined"),
                    n_english=2, n_calibration=4, n_benign_pool=0, mask_seed=7, progress=False)
    assert results["mask_seed"] == settings.seed and other["mask_seed"] == 7
    assert other["detectors"]["uncertainty"]["settings"]["seed"] == 7
    assert any((tmp_path / "run" / "features").glob("*/n8-p*-s7-*"))
    assert other["detectors"]["uncertainty"]["threshold"] != results["detectors"]["uncertainty"]["threshold"]
    assert "mask seed 7" in (out / "tables.md").read_text()

    # balanced masks: a copy of the run with I = 10 (blocks of 10 at p = 0.1) draws into its own cache
    balanced_run = tmp_path / "run_balanced"
    balanced_run.mkdir()
    document = json.loads((tmp_path / "run" / "results.json").read_text())
    document["settings"].update(n_realizations=10, masks="balanced")
    (balanced_run / "results.json").write_text(json.dumps(document))
    shutil.copy(tmp_path / "run" / "setup.json", balanced_run / "setup.json")
    with pytest.raises(ConfigError, match="balanced dropout masks"):
        compare(out, run_dir=balanced_run, kinds=("uncertainty",), craft_adaptive=2, progress=False)
    balanced = compare(out, run_dir=balanced_run, kinds=("uncertainty", "combined"),  # members' rows: cached
                       n_english=2, n_calibration=4, n_benign_pool=4, progress=False)
    assert balanced["masks"] == "balanced" and balanced["detectors"]["uncertainty"]["settings"]["masks"] == "balanced"
    assert any((balanced_run / "features").glob("*/n10-p*-balanced*"))
    assert "masks are balanced" in (out / "tables.md").read_text()


def test_the_report_shows_every_detector_and_attack():
    cell = {"auroc": 0.9, "auroc_ci": [0.8, 1.0], "tpr_at_1pct_fpr": 0.5, "detection_rate": 0.7,
            "n_adversarial": 30, "n_benign": 30}
    results = {"run": "runs/j", "recognizer": "ctc", "target_fpr": 0.05, "attacks": ["cw", "us"],
               "sizes": {"fit_benign": 40, "fit_adversarial": 38, "calibration": 321},
               "cells": {"transform": {"cw": cell, "us": cell}},
               "detectors": {"transform": {"name": "max distance", "passes": 5}},
               "false_alarms": {"transform": {"fsdd-digits": {"rate": 0.0, "n": 15}}}, "adaptive": {}}
    tables = tables_markdown(results)
    assert "| transform (max distance) | 0.900 (0.80–1.00, n=30/30) | 0.900" in tables
    assert "transcribes correctly" not in tables  # older results: no such cells
    speech = {**cell, "recognised_benign": {"auroc": 0.95, "auroc_ci": [0.9, 1.0], "tpr_at_1pct_fpr": 0.8,
                                            "n_adversarial": 30, "n_benign": 26}}
    with_wrong = {**results, "cells": {"transform": {"cw": speech, "us": cell}},
                  "misrecognised_test_benign": {"n": 4, "of": 30, "ids": []},
                  "flagged_test_benign": {"transform": {"recognised": {"rate": 0.0, "n": 26},
                                                        "misrecognised": {"rate": 0.5, "n": 4}}}}
    tables = tables_markdown(with_wrong)
    assert "4 of 30 benign test sources are transcribed wrongly" in tables
    assert "| transform | 0.950 (0.90–1.00, n=30/26) |" in tables and "| transform | 80.0 |" in tables
    assert "| transform | 0.0 (n=26) | 50.0 (n=4) |" in tables
    assert not auroc_cells_lacking_n_and_interval(tables)
    assert "| transform | 5 | 0.0 (n=15) |" in tables and "| CW | US |" in tables
    assert "larger benign set" not in tables  # no pool scored
    pooled = {**speech, "benign_pool": {"auroc": 0.85, "auroc_ci": [0.8, 0.9], "tpr_at_1pct_fpr": 0.3,
                                        "n_adversarial": 30, "n_benign": 330},
              "benign_pool_recognised": {"auroc": 0.97, "auroc_ci": [0.95, 0.99], "tpr_at_1pct_fpr": 0.9,
                                         "n_adversarial": 30, "n_benign": 250}}
    tables = tables_markdown({**with_wrong, "cells": {"transform": {"cw": pooled, "us": cell}},
                              "sizes": {**results["sizes"], "benign_pool": 300},
                              "misrecognised_benign_pool": {"n": 76, "of": 300},
                              "flagged_benign_pool": {"transform": {"recognised": {"rate": 0.02, "n": 224},
                                                                    "misrecognised": {"rate": 0.25, "n": 76}}}})
    assert "plus 300 more held-out benign utterances" in tables and "76 of the 300 wrongly" in tables
    assert "| transform | 0.850 (0.80–0.90, n=30/330) |" in tables and "| transform | 30.0 |" in tables
    assert "| transform | 0.970 (0.95–0.99, n=30/250) |" in tables and "| transform | 90.0 |" in tables
    assert "| transform | 2.0 (n=224) | 25.0 (n=76) |" in tables
    assert not auroc_cells_lacking_n_and_interval(tables)
    # an adaptive row shows what evading cost, paired by source, and "–" where an older results.json lacks it
    row = {"attempted": 27, "reached_target": 27, "evaded": 11, "evasion_rate": 11 / 27,
           "distortion_evading": {"mean_db_x_delta": -31.6, "median_snr_db": 18.3, "n": 11},
           "distortion_cw_same_sources": {"mean_db_x_delta": -35.9, "median_snr_db": 21.6, "n": 27},
           "extra_db_evading_paired": {"mean": 5.2, "median": 1.9, "n": 11}}
    older = {k: v for k, v in row.items() if k != "extra_db_evading_paired"}
    tables = tables_markdown({**results, "adaptive": {"transform": {"new": row, "old": older}}})
    assert "| -31.6 dB / 18.3 dB | -35.9 dB / 21.6 dB | +5.2 dB (n=11) |" in tables
    assert "| -31.6 dB / 18.3 dB | -35.9 dB / 21.6 dB | – |" in tables
