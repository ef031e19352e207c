"""A deployment's own (secret) dropout seed: Detector.set_mask_seed, detect/serve --mask-seed, the seed sweep."""

import json
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
