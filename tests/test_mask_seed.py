"""A deployment's own (secret) dropout seed (Detector.set_mask_seed, detect/serve --mask-seed), the seed
sweep, and the adaptive-attack experiment's summaries and classifier table."""

import json
from pathlib import Path
import warnings

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from asrguard.cli import app
from asrguard.errors import ConfigError
from asrguard.experiments.mask_seeds import seed_sweep
from _detect_helpers import clips, fitted_detector, tiny_recognizer


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("seed")
    recognizer = tiny_recognizer(root)
    det = fitted_detector(recognizer)
    det.save(root / "detector")
    wav = root / "x.wav"
    sf.write(wav, clips(1, 4)[0], 16000)
    return root, det, wav


def test_another_seed_draws_other_masks_and_keeps_the_fit(saved):
    _, det, _ = saved
    x = clips(1, 4, noisy=True)[0]
    threshold, classifier = det.threshold, det.classifier
    before = det.features(x).transcripts
    assert det.set_mask_seed(12345) is det
    assert det.feature_extractor.config.seed == 12345 and det.threshold == threshold and det.classifier is classifier
    other = det.features(x).transcripts
    assert other != before                          # other masks, other realisations
    assert det.features(x).transcripts == other     # still reproducible from the seed
    assert det.explain(x)["seed"] == 12345
    det.set_mask_seed(None)                         # None keeps the current seed
    assert det.feature_extractor.config.seed == 12345
    det.set_mask_seed(0)
    assert det.features(x).transcripts == before


def test_random_seed_is_secret_and_fresh(saved):
    _, det, _ = saved
    try:
        det.set_mask_seed("random")
        first = det.feature_extractor.config.seed
        assert det.mask_seed_is_secret and det.explain(clips(1, 3)[0])["seed"] == "secret"
        det.set_mask_seed("RANDOM")
        assert det.feature_extractor.config.seed != first and 0 <= first < 2**63
    finally:
        det.set_mask_seed(0)
    assert not det.mask_seed_is_secret


@pytest.mark.parametrize("bad", ["abc", "-1", -3, "1.5"])
def test_bad_seed_is_a_clear_error(saved, bad):
    _, det, _ = saved
    with pytest.raises(ConfigError, match="mask seed must be a non-negative integer or 'random'"):
        det.set_mask_seed(bad)
    assert det.feature_extractor.config.seed == 0


def test_detect_cli_takes_the_seed_from_the_option_or_the_environment(saved):
    root, _, wav = saved
    runner = CliRunner()
    args = ["detect", str(wav), "--detector", str(root / "detector"), "--model", str(root / "model0"), "--json"]
    result = runner.invoke(app, args + ["--mask-seed", "77"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["seed"] == 77
    result = runner.invoke(app, args, env={"ASRGUARD_MASK_SEED": "random"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["seed"] == "secret"
    result = runner.invoke(app, args + ["--mask-seed", "seven"])
    assert result.exit_code == 2 and "mask seed must be" in result.output and "Traceback" not in result.output


def test_service_never_reports_a_secret_seed(saved):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    import io

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from asrguard.service.app import create_app

    root, _, _ = saved
    det = fitted_detector(tiny_recognizer(root / "svc"))
    client = TestClient(create_app(detector=det, mask_seed="random"))
    assert client.get("/healthz").json()["mask_seed"] == "secret"
    buf = io.BytesIO()
    sf.write(buf, clips(1, 5)[0], 16000, format="WAV", subtype="PCM_16")
    body = client.post("/v1/detect", files={"file": ("a.wav", buf.getvalue(), "audio/wav")}).json()
    assert body["seed"] == "secret" and str(det.feature_extractor.config.seed) not in json.dumps(body)


def test_seed_sweep_scores_every_seed_at_the_fitted_threshold_and_restores_the_seed(saved):
    _, det, _ = saved
    benign, adversarial = clips(4, 20), {"noise": clips(4, 21, noisy=True)}
    ticks = []
    sweep = seed_sweep(det, benign, adversarial, seeds=(0, 9), progress=ticks.append)
    assert sweep["seeds"] == [0, 9] and sum(ticks) == 16 and det.feature_extractor.config.seed == 0
    for seed in (0, 9):
        cell = sweep["per_seed"][seed]["noise"]
        assert cell["n_benign"] == 4 and cell["n_adversarial"] == 4
        scores = [det.set_mask_seed(seed).score(w) for w in adversarial["noise"]]
        assert cell["true_positive_rate"] == pytest.approx(np.mean(np.array(scores) > det.threshold))
    det.set_mask_seed(0)
    low, high = sweep["spread"]["noise"]["auroc"]
    assert low == min(sweep["per_seed"][s]["noise"]["auroc"] for s in (0, 9)) and low <= high
    with pytest.raises(ConfigError):
        seed_sweep(det, [], adversarial)
    with pytest.raises(ConfigError):
        seed_sweep(det, benign, adversarial, seeds=())


def test_adaptive_summary_compares_the_known_seed_with_the_secret_ones(saved):
    from asrguard.experiments.adaptive import RunTargets, markdown, summarise

    _, det, _ = saved
    benign = clips(4, 30)
    sets = {"known_mask": clips(3, 31, noisy=True), "cw": clips(3, 32, noisy=True)}
    sweep = seed_sweep(det, benign, sets, seeds=(0, 11, 12))
    summary = summarise(sweep, known_seed=0)
    assert summary["at_known_seed"] == sweep["per_seed"][0]
    secret = summary["at_secret_seeds"]["cw"]["true_positive_rate"]
    rates = [sweep["per_seed"][s]["cw"]["true_positive_rate"] for s in (11, 12)]
    assert secret == {"mean": pytest.approx(np.mean(rates)), "min": min(rates), "max": max(rates)}
    table = markdown({**summary, "classifier": det.classifier.name, "threshold": det.threshold, "n_sources": 4,
                      "known_seed": 0, "secret_seeds": [11, 12], "n_known_mask": 3, "n_cw": 3,
                      "attack": {"n_success": 3, "n": 4, "mean_db_x_delta": -30.0, "seconds_per_success": 2.0},
                      "attack_config": {"n_realizations": 8, "required_fraction": 0.9},
                      "known_realizations_on_target": {"mean": 0.5, "median": 0.5, "share_reaching_required": 0.25}})
    assert "| known-mask examples detected (n = 3) |" in table and "goal of 90 %" in table
    assert RunTargets({"a": "stop"}).choose("a", 10) == "stop" and RunTargets({}).choose("b", 10) is None


def _tiny_finished_run(root, recognizer, data_root):
    """A finished-reproduction folder over 12 real held-out sources, with made-up 'attacks'.

    Each 'attack' example is its source with loud noise added, so the classifiers have
    something to separate; the folder layout is the one `asrguard reproduce` writes.
    """
    from asrguard.attacks.sources import load_items
    from asrguard.audio import save_audio
    from asrguard.experiments.jayashankar2020 import SPEECH_ATTACKS, Settings

    settings = Settings(corpora=("fsdd-digits",), n_sources=12, n_realizations=8, test_fraction=0.5)
    items = load_items(list(settings.corpora), settings.n_sources, settings.seed, data_root, 16000)
    rng = np.random.default_rng(0)
    attacks = {}
    for k, name in enumerate(SPEECH_ATTACKS + ("known-mask",)):
        folder = root / "attacks" / f"{name}-{k:012d}"
        (folder / "audio").mkdir(parents=True)
        rows = []
        for item in items:
            noisy = np.clip(item.waveform + 0.3 * rng.uniform(-1, 1, item.waveform.size), -1, 1).astype(np.float32)
            save_audio(folder / "audio" / f"{item.id.replace(':', '_')}.wav", noisy, 16000)
            rows.append({"id": item.id, "success": True, "target": "go",
                         "audio": f"audio/{item.id.replace(':', '_')}.wav"})
        (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        attacks[name] = {"config_hash": f"{k:012d}", "folder": str(folder), "rows": rows}
    (root / "results.json").write_text(json.dumps({
        "settings": settings.to_dict(), "data_root": str(data_root), "model_checksum": recognizer.checksum,
        "attacks": {n: {"config_hash": a["config_hash"], "folder": a["folder"]} for n, a in attacks.items()}}))
    return items, attacks


def test_classifier_table_trains_on_dr_and_optionally_on_another_attack(saved, shared_data, tmp_path):
    from asrguard.experiments.adaptive import classifier_table
    from asrguard.experiments.jayashankar2020 import CLASSIFIERS, finished_run

    _, det, _ = saved
    recognizer = det.recognizer
    items, attacks = _tiny_finished_run(tmp_path, recognizer, shared_data)
    _, _, speech, train_ids, test_sources = finished_run(tmp_path, recognizer)
    assert [i.id for i in speech] == [i.id for i in items] and len(train_ids) + len(test_sources) == 12
    sets = {name: (f"{name}-{attacks[name]['config_hash']}", Path(attacks[name]["folder"]), attacks[name]["rows"])
            for name in attacks}
    plain = classifier_table(tmp_path, recognizer, sets)
    assert set(plain) == {"cw", "dr", "nrr", "ia", "known-mask"} and set(plain["cw"]) == set(CLASSIFIERS)
    cell = plain["cw"]["char-svm4"]
    # test sources only: each successful example and exactly its benign source
    assert cell["n_benign"] == cell["n_adversarial"] == len(test_sources)
    assert 0.0 <= cell["auroc"] <= 1.0 and not any(k.startswith("_") for k in cell)
    # the features went through the run's cache, so a second call reuses them
    cached = sorted(p.name for p in (tmp_path / "features").rglob("*.json"))
    hardened = classifier_table(tmp_path, recognizer, sets, also_train_on=sets["known-mask"])
    assert sorted(p.name for p in (tmp_path / "features").rglob("*.json")) == cached
    assert set(hardened) == set(plain) and hardened["cw"]["char-svm4"]["n_benign"] == len(test_sources)
    # a deployable detector fitted the shipped way, with the extra attack's examples added
    from asrguard.detect.detector import Detector
    from asrguard.experiments.jayashankar2020 import fit_default_detector

    root = saved[0]
    kind, folder, _ = sets["known-mask"]
    summary = fit_default_detector(tmp_path, tmp_path / "hardened", candidates=("char-svm4",), extra_calibration=2,
                                   model=root / "model0", also_train_on=(kind, folder))
    assert set(summary["test_at_calibrated_threshold"]) == {"cw", "dr", "nrr", "ia", kind}
    assert f"DR and {kind} examples" in summary["trained_on"]
    assert summary["n_fit"]["adversarial"] == 2 * summary["n_fit"]["benign"]  # DR and known-mask of each source
    assert Detector.load(tmp_path / "hardened", recognizer).classifier.name == "char-svm4"


def test_held_out_examples_are_the_test_sources_and_skip_attacks_a_partial_run_lacks(saved, shared_data, tmp_path):
    from asrguard.experiments.jayashankar2020 import finished_run
    from asrguard.experiments.mask_seeds import held_out_examples

    _, det, _ = saved
    _tiny_finished_run(tmp_path, det.recognizer, shared_data)
    benign, adversarial = held_out_examples(tmp_path, det.recognizer)
    _, _, _, _, test_sources = finished_run(tmp_path, det.recognizer)
    assert len(benign) == len(test_sources) and set(adversarial) == {"cw", "dr", "nrr", "ia"}
    assert all(len(examples) == len(test_sources) for examples in adversarial.values())
    # a run made with `--attacks cw,dr` has no NRR or IA folder to read
    results = json.loads((tmp_path / "results.json").read_text())
    for name in ("nrr", "ia"):
        del results["attacks"][name]
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert set(held_out_examples(tmp_path, det.recognizer)[1]) == {"cw", "dr"}
