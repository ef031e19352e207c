"""The shipped Whisper detector: found for ``--recognizer whisper:tiny.en``, calls the bundled
LibriVox sentence benign, and the Whisper demo crafts CW toward the paper's target and reports
both verdicts. Needs transformers, tokenizers and the bundled tiny.en wheel; skipped without."""

import json

import pytest

pytest.importorskip("transformers", reason="Whisper needs transformers (pip install transformers)")
pytest.importorskip("tokenizers", reason="Whisper needs tokenizers (pip install tokenizers)")

from asrguard.defaults import ASSETS, PAPER_TARGET, demo_profile, load_detector, shipped_detector_dir  # noqa: E402
from asrguard.errors import ModelFileError  # noqa: E402

WHISPER_DETECTOR = ASSETS / "detectors" / "whisper-tiny.en"


@pytest.fixture(scope="module")
def whisper():
    from asrguard.asr.registry import load_recognizer
    from asrguard.asr.whisper.convert import bundled_source

    try:
        bundled_source()
    except ModelFileError as exc:
        pytest.skip(str(exc))
    return load_recognizer("whisper:tiny.en")


def test_the_whisper_detector_is_shipped_with_its_calibration_stated():
    document = json.loads((WHISPER_DETECTOR / "detector.json").read_text())
    assert document["classifier"]["name"] == "all-svm"
    meta = document["metadata"]
    assert "worst subset" in meta["threshold_rule"] and document["threshold"] >= meta["pooled_threshold"]
    # every subset the bar names calibrates the threshold, the short word and digit clips included
    assert {"an4", "common-voice", "librispeech", "non-native adults", "non-native children",
            "speech commands words", "fsdd digits"} <= set(meta["calibration_subsets"])


def test_whisper_finds_its_shipped_detector_by_checksum(whisper):
    assert shipped_detector_dir(whisper) == WHISPER_DETECTOR
    detector = load_detector(recognizer=whisper)
    assert detector.classifier.name == "all-svm" and detector.recognizer is whisper


def test_the_whisper_demo_attacks_the_bundled_sentence_toward_the_papers_target(whisper, tmp_path):
    from asrguard.experiments.demo import run_demo

    # a few steps only: the full demo (150 steps) is measured, not tested (docs/results/whisper/defence)
    summary = run_demo(tmp_path, recognizer="whisper:tiny.en", attack_settings={"max_iter": 5})
    assert summary["target"] == PAPER_TARGET and summary["source"].endswith("0890.flac")
    assert summary["attack"]["iterations"] <= 5 and summary["attack"]["db_x_delta"] <= -25.0
    # the bundled sentence, heard right and called benign by the shipped detector
    assert demo_profile("whisper:tiny.en").target == PAPER_TARGET
    assert "rather selfish" in summary["verdicts"]["benign"]["transcript"].lower()
    assert summary["verdicts"]["benign"]["verdict"] == "benign", summary["verdicts"]["benign"]
    assert summary["detector"]["classifier"] == "all-svm"
    for name in ("benign.wav", "adversarial.wav", "uncertainty.png", "demo.json"):
        assert (tmp_path / name).stat().st_size > 0
