"""The rival detectors' parts (statistics, transformations, noise), the registry, the CLI and the service."""

import io
import json
import math
import warnings

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from asrguard.cli import app
from asrguard.cli.detect import parse_settings
from asrguard.detect.detector import Detector
from asrguard.detect.registry import KINDS, load_detector, make_detector, saved_kind, settings_of
from asrguard.detect.rivals.distribution import STATISTICS, step_statistics, utterance_features
from asrguard.detect.rivals.noise import NoiseFloodDetector, band_noise
from asrguard.detect.rivals.temporal import matching_prefix
from asrguard.detect.rivals.transform import TransformDetector
from asrguard.detect.rivals.transforms import (RANDOM_RANGES, down_up, lpc_resynthesis, mel_inversion, quantize,
                                               random_settings)
from asrguard.errors import ConfigError
from _detect_helpers import clips, fitted_detector, tiny_recognizer

RATE = 16000


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    return tiny_recognizer(tmp_path_factory.mktemp("rivals-parts"))


def tone(freq, seconds=0.5, amplitude=0.3):
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


def band_energy(x, low, high):
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    return float(spectrum[(freqs >= low) & (freqs <= high)].sum() / spectrum.sum())


# --- output-distribution statistics ---------------------------------------------------------
def test_step_statistics_of_known_distributions():
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    s = step_statistics(np.log(np.stack([p, q])) + 3.0)  # unnormalised rows are renormalised
    assert s["entropy"][0] == pytest.approx(math.log(2)) and s["max"][1] == pytest.approx(math.log(0.9))
    assert s["min"][1] == pytest.approx(math.log(0.1)) and s["median"][0] == pytest.approx(math.log(0.5))
    assert s["kl"][0] == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1))
    m = (p + q) / 2
    js = 0.5 * np.sum(p * np.log(p / m)) + 0.5 * np.sum(q * np.log(q / m))
    assert s["js"][0] == pytest.approx(js) and 0 < s["js"][0] < math.log(2)


def test_utterance_features_aggregate_each_statistic_over_steps():
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.ones(5), size=7))
    f, s = utterance_features(lp), step_statistics(lp)
    assert f.shape == (len(STATISTICS) * 4,)
    entropy = f[4 * STATISTICS.index("entropy"):][:4]
    assert entropy.tolist() == pytest.approx([s["entropy"].mean(), np.median(s["entropy"]), s["entropy"].max(),
                                              s["entropy"].min()])
    single = utterance_features(lp[:1])  # one step: no next step, so no divergences
    assert single[4 * STATISTICS.index("kl"):].tolist() == [0.0] * 8
    with pytest.raises(ConfigError, match="NaN"):
        step_statistics(np.full((2, 3), np.nan))


# --- transformations ----------------------------------------------------------------------
def test_quantize_and_down_up():
    assert quantize(np.array([0.30, -0.70, 0.01]), RATE, bits=3).tolist() == [0.25, -0.75, 0.0]
    mixed = tone(1000) + tone(6000)
    low = down_up(mixed, RATE, low_rate=8000)
    assert len(low) == len(mixed) and band_energy(low, 5000, 8000) < 1e-3 < band_energy(mixed, 5000, 8000)


def test_mel_inversion_keeps_the_pitch_and_follows_its_seed():
    x = tone(1000)
    y = mel_inversion(x, RATE, seed=0)
    assert y.shape == x.shape and np.all(np.abs(y) <= 1.0)
    assert band_energy(y, 900, 1100) > 0.8  # the tone survives; its phase is Griffin-Lim's
    assert np.array_equal(y, mel_inversion(x, RATE, seed=0)) and not np.array_equal(y, mel_inversion(x, RATE, seed=1))


def test_lpc_resynthesis_is_exact_with_the_whole_residual_and_keeps_the_envelope_without_it():
    x = tone(300) + 0.5 * tone(2500)
    assert np.abs(lpc_resynthesis(x, RATE, cutoff_hz=RATE / 2) - x).max() < 1e-4
    y = lpc_resynthesis(x, RATE, cutoff_hz=1000, seed=0)
    assert y.shape == x.shape and not np.allclose(y, x)
    assert band_energy(y, 250, 350) > 0.5  # the low band passes as it is
    assert np.array_equal(y, lpc_resynthesis(x, RATE, cutoff_hz=1000, seed=0))
    with pytest.raises(ConfigError, match="cutoff_hz"):
        lpc_resynthesis(x, RATE, cutoff_hz=9000)


# --- noise flooding and the temporal prefix ------------------------------------------------------
def test_randomised_transform_settings_are_per_input_within_their_ranges_and_follow_the_seed(rec, tmp_path):
    inputs = [tone(f) for f in (220, 330, 440, 550, 660, 770)]
    for name, ranges in RANDOM_RANGES.items():
        draws = [random_settings(name, x, 5) for x in inputs]
        assert all(low <= d[k] <= high and (d[k] - low) % step == 0 for d in draws
                   for k, (low, high, step) in ranges.items())
        assert len({tuple(d.values()) for d in draws}) > 1  # each input its own draw
        assert draws == [random_settings(name, x, 5) for x in inputs]
    assert [random_settings("resample", x, 5) for x in inputs] != [random_settings("resample", x, 6) for x in inputs]
    with pytest.raises(ConfigError):
        random_settings("echo", inputs[0], 5)

    det = TransformDetector(rec, randomize=True, seed=5)
    x = inputs[0]
    drawn = random_settings("resample", x, 5)["low_rate"]
    assert det.settings_for("resample", x) == {"low_rate": drawn}
    assert np.array_equal(det.transform("resample", x), down_up(x, RATE, low_rate=drawn))
    assert np.array_equal(det.transform("quantize", x), quantize(x, RATE, **random_settings("quantize", x, 5)))
    plain = TransformDetector(rec, seed=5)
    assert plain.settings_for("resample", x) == {"low_rate": 8000} and "randomize" not in plain.settings()
    assert det.settings()["randomize"] is True
    # the setting travels with the detector: saved, loaded and through the registry
    det.fit(clips(4, 0))
    assert load_detector(det.save(tmp_path / "random"), rec).randomize
    assert make_detector("transform", rec, randomize=True).randomize
    with pytest.raises(ConfigError, match="randomize"):
        TransformDetector(rec, randomize="yes")


def test_likelihood_measure_is_the_loss_gain_of_the_inputs_own_transcript_per_second(rec, tmp_path):
    from asrguard.asr.base import AudioBatch
    from asrguard.detect.combined import CombinedDetector
    from asrguard.errors import MissingCapabilityError
    from _detect_helpers import TranscribeOnly

    det = TransformDetector(rec, transforms=("resample", "quantize"), measure="likelihood", reduce="mean", seed=2)
    assert det.feature_names == ["nll_gain_resample", "nll_gain_quantize"] and det.settings()["measure"] == "likelihood"
    assert "measure" not in TransformDetector(rec).settings()  # older caches and fingerprints stay valid
    inputs = [x for x in clips(6, 3, seconds=0.6) if rec.normalize_text(rec.transcribe([x])[0])]
    assert inputs, "the tiny model transcribes none of the clips"
    x = inputs[0]
    copies = det.copies_of(x)
    transcript = rec.transcribe([x])[0]
    losses = rec.loss(AudioBatch.from_waveforms([x, *copies], RATE), [transcript] * 3).detach().numpy()
    row = det.features(x)
    assert np.allclose(row, (losses[1:] - losses[0]) / (len(x) / RATE), rtol=1e-5, atol=1e-6)
    assert np.array_equal(det.likelihood_gains(x, copies, ""), [0.0, 0.0])  # nothing heard, nothing lost
    det.fit(inputs + clips(4, 4))
    evidence = det.explain(x)["evidence"]["compared"]
    assert [e["nll_gain"] for e in evidence] == pytest.approx(row.tolist())
    assert det.score(x) == pytest.approx(row.mean())
    loaded = load_detector(det.save(tmp_path / "likelihood"), rec)
    assert loaded.measure == "likelihood" and loaded.score(x) == pytest.approx(det.score(x))
    with pytest.raises(ConfigError, match="measure"):
        TransformDetector(rec, measure="loudness")
    with pytest.raises(MissingCapabilityError, match="loss"):
        TransformDetector(TranscribeOnly(rec), measure="likelihood")
    # inside the combined detector the transform member measures the same way
    combined = CombinedDetector(rec, n=3, p=0.3, transform_measure="likelihood", seed=2)
    assert combined.members["transform"].measure == "likelihood"
    assert combined.settings()["transform_measure"] == "likelihood"
    assert "transform_measure" not in CombinedDetector(rec, n=3).settings()
    columns = [i for i, name in enumerate(combined.feature_names) if name.startswith("transform:nll_gain_")]
    member = combined.features(x)[columns]
    alone = TransformDetector(rec, measure="likelihood", seed=2).features(x)
    assert np.allclose(member, alone)


def test_band_noise_and_the_flooding_level(rec):
    noise = band_noise(RATE, RATE, (500, 4000), np.random.default_rng(0))
    assert math.sqrt(np.mean(noise ** 2)) == pytest.approx(1.0) and band_energy(noise, 500, 4000) > 0.999
    det = NoiseFloodDetector(rec, snr_db=(20.0,), draws=1, band_hz=(500, 4000))
    x = tone(440, amplitude=0.1)
    added = det.noisy_copies(x)[0] - x
    snr = 10 * math.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(added.astype(np.float64) ** 2))
    assert snr == pytest.approx(20.0, abs=0.05)


def test_matching_prefix():
    assert matching_prefix("open the door", "open", 0.5) == "open"
    assert matching_prefix("open the door", "", 0.5) == "open t"  # nothing heard: half of the text (6 of 13)
    assert matching_prefix("go", "go left", 0.5) == "go"


# --- registry, CLI, service -----------------------------------------------------------------------
def test_registry_builds_every_kind_and_loads_old_folders(rec, tmp_path):
    for kind in KINDS:
        det = make_detector(kind, rec)
        assert det.kind == kind and set(settings_of(kind)) >= {"seed", "target_fpr"}
    det = make_detector("uncertainty", rec, n=4, p=0.2, classifier="gaussian")
    assert isinstance(det, Detector) and det.feature_extractor.config.n == 4
    with pytest.raises(ConfigError, match="unknown detector kind 'fast'"):
        make_detector("fast", rec)
    folder = fitted_detector(rec).save(tmp_path / "unc")
    document = json.loads((folder / "detector.json").read_text())
    assert document["kind"] == "uncertainty"
    assert saved_kind(folder) == "uncertainty" and isinstance(load_detector(folder, rec), Detector)


def test_parse_settings():
    assert parse_settings(["transforms=mel,lpc", "fractions=0.5", "band_hz=300,4000", "reduce=min"]) == {
        "transforms": ["mel", "lpc"], "fractions": 0.5, "band_hz": [300, 4000], "reduce": "min"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_settings(["transforms"])


def test_fit_detector_kind_then_detect(tiny_model, tmp_path):
    benign, adversarial = tmp_path / "benign", tmp_path / "adversarial"
    for folder, waves in ((benign, clips(4, 0)), (adversarial, clips(3, 1, noisy=True))):
        folder.mkdir()
        for i, w in enumerate(waves):
            sf.write(folder / f"{i}.wav", w, RATE)
    runner = CliRunner()
    out = tmp_path / "det"
    base = ["fit-detector", "--benign", str(benign), "--model", str(tiny_model), "--out", str(out)]
    result = runner.invoke(app, base + ["--detector-kind", "temporal", "--setting", "fractions=0.4,0.6",
                                        "--adversarial", str(adversarial), "--target-fpr", "0.25"])
    assert result.exit_code == 0, result.output
    assert "temporal-max detector" in result.output and "4 benign + 3 adversarial" in result.output
    assert json.loads((out / "detector.json").read_text())["settings"]["fractions"] == [0.4, 0.6]
    wav = benign / "0.wav"
    detect = ["detect", str(wav), "--detector", str(out), "--model", str(tiny_model)]
    body = json.loads(runner.invoke(app, detect + ["--json"]).output.strip().splitlines()[-1])
    assert body["detector"] == "temporal" and body["file"] == str(wav) and len(body["features"]) == 2
    text = runner.invoke(app, detect)
    assert text.exit_code == 0 and "temporal detector" in text.output and "first 0.4" in text.output
    # the combined detector from the command line: its settings, and a clear line without adversarial audio
    combined = base[:-1] + [str(tmp_path / "combined"), "--detector-kind", "combined", "--setting", "n=6",
                            "--setting", "members=transform", "--target-fpr", "0.25"]
    result = runner.invoke(app, combined + ["--adversarial", str(adversarial)])
    assert result.exit_code == 0 and "combined-svm detector" in result.output, result.output
    saved = json.loads((tmp_path / "combined" / "detector.json").read_text())
    assert saved["kind"] == "combined" and saved["settings"]["members"] == ["transform"] and saved["settings"]["n"] == 6
    body = json.loads(runner.invoke(app, ["detect", str(wav), "--detector", str(tmp_path / "combined"), "--model",
                                          str(tiny_model), "--json"]).output.strip().splitlines()[-1])
    assert body["detector"] == "combined" and body["realizations"] == 6 + 1 + 4
    result = runner.invoke(app, combined)
    assert result.exit_code == 2 and "needs adversarial examples" in result.output
    # settings that belong to another family, or do not exist, are one clear line each
    for extra, message in ((["--detector-kind", "transform", "--classifier", "all-svm"], "--classifier is a setting"),
                           (["--detector-kind", "transform", "--setting", "blur=3"], "has no setting 'blur'"),
                           (["--setting", "draws=2"], "--setting is for the rival detectors")):
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_the_service_serves_a_rival_detector(rec):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    with warnings.catch_warnings():  # starlette's notice about httpx's successor is not ours to fix
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from asrguard.service.app import create_app
    from asrguard.service.limits import Limits

    det = make_detector("noise-flood", rec, seed=2).fit(clips(4, 0))
    client = TestClient(create_app(detector=det, limits=Limits(max_bytes=200_000, max_seconds=3.0)))
    health = client.get("/healthz").json()
    assert health["classifier"] == "noise-flood-mean" and health["realizations"] == det.passes
    assert health["mask_seed"] == 2 and health["threshold"] == det.threshold_
    buf = io.BytesIO()
    x = clips(1, 5)[0]
    sf.write(buf, x, RATE, format="WAV", subtype="FLOAT")
    r = client.post("/v1/detect", files={"file": ("x.wav", buf.getvalue(), "audio/wav")})
    assert r.status_code == 200, r.text
    assert r.json()["detector"] == "noise-flood" and r.json()["score"] == pytest.approx(det.score(x))


def test_the_measurement_cross_fits_the_distribution_detector_out_of_fold(rec):
    from asrguard.experiments.rivals import cross_fitted, summary_of, table

    rng = np.random.default_rng(0)
    rows = np.vstack([rng.normal(0, 1, (10, 24)), rng.normal(1.5, 1, (10, 24))])
    labels = np.r_[np.zeros(10, dtype=int), np.ones(10, dtype=int)]
    groups = [f"s{i % 10}" for i in range(20)]  # each adversarial row shares its source with a benign one
    for model in ("logistic", "gaussian"):
        scores = cross_fitted(rec, model, rows, labels, groups, seed=0)
        assert np.all(np.isfinite(scores))
        summary = summary_of(labels, scores)
        assert summary["n_benign"] == summary["n_adversarial"] == 10 and summary["auroc"] > 0.8
    results = {"detectors": {"distribution (logistic)": {"how": "cross-fitted", **summary}},
               "per_feature": {"transform": {"distance_mel": 0.5}}}
    assert "| distribution (logistic) | cross-fitted |" in table(results) and "10 / 10" in table(results)
