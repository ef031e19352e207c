"""The shipped detector beside the shipped model, and the README's main job (the demo)."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from asrguard.asr.ctc import CTCRecognizer
from asrguard.cli import app
from asrguard.defaults import DEFAULT_DETECTOR_DIR, EXAMPLE_AUDIO, load_detector
from asrguard.errors import AsrguardError
from asrguard.experiments.demo import run_demo


def test_shipped_detector_matches_shipped_model_and_says_how_it_was_fitted():
    detector = load_detector()
    assert detector.recognizer.checksum == CTCRecognizer.load().checksum
    meta = json.loads((DEFAULT_DETECTOR_DIR / "detector.json").read_text())
    selection = json.dumps(meta)
    assert "held-out speakers" in selection and detector.target_fpr == pytest.approx(0.05)


def test_shipped_detector_calls_the_bundled_example_benign():
    result = load_detector().explain(EXAMPLE_AUDIO)
    assert result["verdict"] == "benign", result
    assert result["transcript"] == "nine one one"
    assert sum(row["count"] for row in result["distinct"]) == 50


def test_demo_attacks_the_example_and_the_detector_flags_only_the_attack(tmp_path):
    summary = run_demo(tmp_path)
    assert summary["attack"]["success"], summary["attack"]
    assert summary["attack"]["db_x_delta"] <= -25.0
    assert summary["verdicts"]["benign"]["verdict"] == "benign"
    assert summary["verdicts"]["adversarial"]["verdict"] == "adversarial"
    for name in ("benign.wav", "adversarial.wav", "uncertainty.png", "demo.json"):
        assert (tmp_path / name).stat().st_size > 0


def test_tampered_shipped_detector_copy_is_refused(tmp_path):
    copy = tmp_path / "detector"
    shutil.copytree(DEFAULT_DETECTOR_DIR, copy)
    weights = copy / "detector.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(AsrguardError):
        load_detector(copy)
    result = CliRunner().invoke(app, ["detect", str(EXAMPLE_AUDIO), "--detector", str(copy)])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_the_shipped_detector_is_found_by_its_recognisers_checksum(tiny_model):
    from asrguard.asr.ctc import CTCRecognizer
    from asrguard.defaults import shipped_detector_dir
    from asrguard.errors import ModelFileError

    assert shipped_detector_dir(CTCRecognizer.load()) == DEFAULT_DETECTOR_DIR
    with pytest.raises(ModelFileError, match="no shipped detector was fitted for this CTCRecognizer"):
        load_detector(recognizer=CTCRecognizer.load(tiny_model))
