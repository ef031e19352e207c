"""Pieces of the Jayashankar et al. reproduction that run without corpora: cache, pairing, tables."""

import json

import numpy as np

from asrguard.experiments.jayashankar2020 import (
    COLUMNS, PAPER, FeatureCache, FeatureSet, paired, tables_markdown,
)
from asrguard.uncertainty.features import FeatureExtractor, FeatureTable
from _detect_helpers import clips, finished_attack_folders, tiny_recognizer
from _report_checks import auroc_cells, auroc_cells_lacking_n_and_interval


def test_feature_cache_reuses_atomic_per_item_files(tmp_path):
    recognizer = tiny_recognizer(tmp_path)
    cache = FeatureCache(tmp_path / "features", recognizer, FeatureExtractor(n=4, p=0.3))
    x = clips(1, 0)[0]
    calls = []

    def load():
        calls.append(1)
        return x

    first = cache.get("benign", "fsdd:a/b", load)
    second = cache.get("benign", "fsdd:a/b", load)
    assert len(calls) == 1 and first.transcripts == second.transcripts
    path = cache.path("benign", "fsdd:a/b")
    assert json.loads(path.read_text())["id"] == "fsdd:a/b"
    assert not list(path.parent.glob(".*"))  # no temp files left behind
    path.write_text("{truncated")  # a corrupt cache entry is recomputed, not trusted
    cache.get("benign", "fsdd:a/b", load)
    assert len(calls) == 2


def test_pairing_keeps_only_successful_examples_and_their_sources():
    t = FeatureTable({"entropy": np.arange(4.0)})
    benign = FeatureSet(["a", "b", "c", "d"], ["a", "b", "c", "d"], t, [None] * 4)
    adv = FeatureSet(["b", "d"], ["b", "d"], FeatureTable({"entropy": np.array([9.0, 8.0])}), [None] * 2)
    b, a = paired(benign, adv, {"a", "b", "c"})
    assert b.ids == ["b"] and a.ids == ["b"]


def test_tables_put_ours_beside_the_paper():
    cells = {label: {"char-svm4": {"accuracy": 0.9, "auroc": 0.97, "auroc_ci": [0.912, 1.0], "tpr_at_1pct_fpr": 0.5,
                                   "tpr_at_5pct_fpr": 0.8, "n_benign": 30, "n_adversarial": 30}}
             for label, _, _ in COLUMNS}
    results = {"settings": {"quick": True, "corpora": ["fsdd-digits"], "n_realizations": 50},
               "model_checksum": "abc", "split": {"n_sources": 100, "n_urban": 10, "n_train_sources": 70,
                                                 "n_test_sources": 30, "train_attack": "dr"},
               "cells": cells, "attacks": {"cw": {"n_attempted": 10, "n_success": 9, "success_rate": 0.9,
                                                  "success_with_dropout_rate": 0.1, "mean_db_x_delta": -30.0,
                                                  "median_snr_db": 25.0, "attack_seconds": 12.0}},
               "timing": {"total_seconds": 1.0, "features_seconds": 0.5}}
    md = tables_markdown(results)
    assert "| P^char | SVM-4 | **90.0** / 76.7 | **90.0** / 96.5" in md
    assert f"**0.970** (0.91–1.00, n=30/30) / {PAPER['auroc']['char-svm4'][1]:.2f}" in md
    assert "| CW | 10 | 9 | 90.0 % |" in md


def test_extra_calibration_items_are_held_out_and_never_run_sources(shared_data):
    from asrguard.attacks.sources import load_items
    from asrguard.asr import recipes
    from asrguard.experiments.jayashankar2020 import Settings, calibration_items

    settings = Settings(n_sources=20)
    sources = {i.id for i in load_items(list(settings.corpora), settings.n_sources, settings.seed, shared_data)}
    extra = calibration_items(settings, shared_data, 16000, sources, 10)
    assert len(extra) == 10 and not {i.id for i in extra} & sources
    assert {i.id.split(":")[0] for i in extra} == set(settings.corpora)  # split over both corpora
    train_speakers = {r.speaker for r in recipes.speech_commands_records(shared_data, "train")}
    # ".../right/bb05582b_nohash_3" and ".../_unknown_/wow_4290ca61_nohash_1": the speaker precedes _nohash_
    sc_speakers = {i.id.rsplit("/", 1)[-1].split("_nohash_")[0].split("_")[-1]
                   for i in extra if i.id.startswith("speech-commands:")}
    assert sc_speakers and not sc_speakers & train_speakers


def test_paper_setup_puts_the_paper_target_on_long_enough_sources(tmp_path):
    import pytest

    from asrguard.asr.ctc import seconds_for_target
    from asrguard.attacks.targets import PAPER_TARGET
    from asrguard.errors import ConfigError
    from asrguard.experiments.jayashankar2020 import Settings

    paper = Settings.make(False, setup="paper")
    assert paper.targets == "paper" and paper.corpora == ("fsdd-digits", "sc-digits")
    # the sources are long enough for the target at the setup's fill
    assert paper.min_seconds * paper.max_fill >= seconds_for_target(PAPER_TARGET) - 0.01
    quick = Settings.make(True, setup="paper")
    assert quick.n_sources == 12 and quick.min_seconds == paper.min_seconds
    assert Settings.make(False) == Settings()  # the default setup is unchanged
    with pytest.raises(ConfigError, match="unknown setup"):
        Settings.make(False, setup="librispeech")


def test_an_output_folder_holds_one_setup_and_attack_folders_never_mix_targets(tmp_path):
    import pytest

    from asrguard.errors import ConfigError
    from asrguard.experiments.jayashankar2020 import Settings, attack_folder, claim_for_setup

    mixed, paper = Settings(), Settings.make(False, setup="paper")
    claim_for_setup(tmp_path, mixed)
    claim_for_setup(tmp_path, mixed)  # resuming the same setup is fine
    with pytest.raises(ConfigError, match="another --out"):
        claim_for_setup(tmp_path, paper)

    # an `asrguard attack --out root/cw` folder is reused only for the same config and targets
    (tmp_path / "cw").mkdir()
    (tmp_path / "cw" / "run.json").write_text(json.dumps({"config_hash": "abc", "targets": "mixed", "max_fill": 0.2}))
    assert attack_folder(tmp_path, "cw", "abc", mixed) == tmp_path / "cw"
    assert attack_folder(tmp_path, "cw", "abc", paper) == tmp_path / "cw-abc-paper0.3"
    assert attack_folder(tmp_path, "cw", "def", mixed) == tmp_path / "cw-def"


def test_min_seconds_keeps_only_sources_long_enough(shared_data):
    from asrguard.attacks.sources import load_items

    items = load_items(["sc-digits", "urbansound8k"], 10, 0, shared_data, min_seconds=2.8)
    assert len(items) == 10 and {i.id.split(":")[0] for i in items} >= {"sc-digits"}
    assert min(len(i.waveform) for i in items) >= 2.8 * 16000
    # without a bound the selection is the one every earlier run used
    assert [i.id for i in load_items(["sc-digits"], 5, 0, shared_data)] == \
        [i.id for i in load_items(["sc-digits"], 5, 0, shared_data, min_seconds=None)]


def test_a_partial_reproduction_fills_only_the_columns_of_its_attacks(tmp_path, shared_data, monkeypatch):
    """`--attacks cw,dr` over finished attack folders: CW and DR columns, the rest left empty."""
    import pytest

    from asrguard.attacks.sources import load_items
    from asrguard.errors import ConfigError
    from asrguard.experiments.jayashankar2020 import Settings, run

    recognizer = tiny_recognizer(tmp_path)
    settings = Settings(corpora=("fsdd-digits",), n_sources=12, n_realizations=8, test_fraction=0.5)
    items = load_items(list(settings.corpora), settings.n_sources, settings.seed, shared_data, 16000)
    # finished attack folders, so nothing is optimised here
    finished_attack_folders(tmp_path / "attacks", recognizer, settings, items)

    import asrguard.experiments.jayashankar2020.attacks as attack_stage

    def no_optimising(*args, **kwargs):
        raise AssertionError("the finished attack folders should have been reused")

    monkeypatch.setattr(attack_stage, "run_attack", no_optimising)  # where the attack stage looks it up
    out = tmp_path / "run"
    results = run(out, settings=settings, attacks=["dr", "cw"], model=tmp_path / "model0", data_root=shared_data,
                  attacks_dir=tmp_path / "attacks", progress=False)
    assert results["columns"] == ["CW p=0.05", "CW", "DR"] and set(results["cells"]) == {"CW p=0.05", "CW", "DR"}
    assert set(results["attacks"]) == {"cw", "dr"} and results["split"]["n_urban"] == 0
    assert results["cells"]["CW"]["char-svm4"]["n_adversarial"] == results["split"]["n_test_sources"]
    tables = (out / "tables.md").read_text()
    assert "| P^char | SVM-4 | **" in tables and "| NRR |" not in tables.split("## Attacks")[1]
    # a quick-sized run: every AUROC shows its n and interval, and the tables say they are a smoke test
    assert auroc_cells(tables) and not auroc_cells_lacking_n_and_interval(tables)
    assert tables.splitlines()[2].startswith("> **Smoke test, not a reproduction.**")
    cell = results["cells"]["CW"]["char-svm4"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["cells"]["CW"]["char-svm4"]["auroc_ci"] == cell["auroc_ci"]
    low, high = cell["auroc_ci"]
    assert low <= cell["auroc"] <= high and saved["auroc_interval"]["n_resamples"] == 1000
    assert all("auroc_ci" in m for per in saved["cells_by_corpus"].values() for g in per.values() for m in g.values())
    with pytest.raises(ConfigError, match="must include dr"):
        run(out, settings=settings, attacks=["cw"], progress=False)
    with pytest.raises(ConfigError, match="unknown attack"):
        run(out, settings=settings, attacks=["dr", "pgd"], progress=False)
