"""The top-level package: its public names resolve, and importing it stays light."""

import subprocess
import sys

import pytest

import asrguard

ENTRY_POINTS = ["load_recognizer", "load_detector", "Detector", "FeatureExtractor", "FeatureTable", "make_classifier",
                "AudioBatch", "Realizations", "Recognizer", "require", "CWAttack", "CWConfig", "AttackResult",
                "load_audio", "save_audio", "validate_waveform", "EXAMPLE_AUDIO"]
ERRORS = ["AsrguardError", "AudioFileError", "ConfigError", "DataError", "InvalidAudioError",
          "MissingCapabilityError", "ModelFileError"]


def test_all_lists_only_names_that_exist():
    assert len(asrguard.__all__) == len(set(asrguard.__all__))
    for name in asrguard.__all__:
        assert getattr(asrguard, name) is not None, name
    assert set(ENTRY_POINTS + ERRORS) <= set(asrguard.__all__)


def test_entry_points_are_the_library_objects():
    from asrguard.asr import base, registry
    from asrguard.attacks import cw
    from asrguard.defaults import load_detector
    from asrguard.detect.detector import Detector

    assert asrguard.load_recognizer is registry.load_recognizer  # the one that takes "whisper:tiny.en" too
    assert asrguard.load_detector is load_detector
    assert asrguard.Detector is Detector and asrguard.Recognizer is base.Recognizer
    assert asrguard.CWAttack is cw.CWAttack and asrguard.require is base.require
    assert issubclass(asrguard.MissingCapabilityError, asrguard.ConfigError)
    assert set(ENTRY_POINTS) <= set(dir(asrguard))


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        asrguard.no_such_name  # noqa: B018
    assert not hasattr(asrguard, "no_such_name")


def test_import_asrguard_does_not_import_torch_or_transformers():
    code = ("import sys, asrguard; heavy = [m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules]; "
            "print(','.join(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_the_shipped_detector_scores_an_array():
    recognizer = asrguard.load_recognizer()
    detector = asrguard.load_detector(recognizer=recognizer)
    audio, rate = asrguard.load_audio(asrguard.EXAMPLE_AUDIO, recognizer.sample_rate)
    explanation = detector.explain(audio)
    assert explanation["transcript"] == "nine one one" and explanation["verdict"] == "benign"
    assert detector.score(audio) == pytest.approx(explanation["score"])
