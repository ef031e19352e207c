"""Detector fit / score / explain / save / load on a small random model and generated audio."""

import json

import numpy as np
import pytest
import soundfile as sf

from asrguard.detect.detector import ARRAYS_NAME, DOCUMENT_NAME, Detector, threshold_for_fpr
from asrguard.errors import AudioFileError, ConfigError, InvalidAudioError, ModelFileError
from asrguard.evaluate.detection import detection_metrics
from asrguard.uncertainty.features import FeatureExtractor
from _detect_helpers import clips, fitted_detector, tiny_recognizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    recognizer = tiny_recognizer(root)
    det = fitted_detector(recognizer)
    saved = det.save(root / "detector")
    return root, recognizer, det, saved


def test_fit_score_predict_explain(setup):
    _, _, det, _ = setup
    assert det.threshold is not None and det.metadata["n_benign"] == 6
    x = clips(1, 7)[0]
    score = det.score(x)
    assert isinstance(score, float) and det.score(x) == score  # seeded: same input, same score
    assert det.predict(x) == (score > det.threshold)
    info = det.explain(x)
    assert info["verdict"] in ("benign", "adversarial") and info["score"] == pytest.approx(score)
    assert sum(row["count"] for row in info["distinct"]) == 8 and sum(info["histogram"]) == 8
    assert isinstance(info["transcript"], str)
    json.dumps(info)  # JSON-ready
    # the synthetic groups are separable with this model: check the fitted scores rank them
    benign, noisy = clips(6, 0), clips(6, 1, noisy=True)
    scores = [det.score(w) for w in benign + noisy]
    assert detection_metrics([0] * 6 + [1] * 6, scores)["auroc"] > 0.5


def test_every_entry_point_validates_audio(setup, tmp_path):
    _, _, det, _ = setup
    bad = np.full(800, np.nan, dtype=np.float32)
    for call in (det.score, det.predict, det.explain):
        with pytest.raises(InvalidAudioError, match="NaN"):
            call(bad)
    with pytest.raises(InvalidAudioError, match=r"\[-1, 1\]"):
        det.score(np.full(800, 3.0, dtype=np.float32))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00junk" * 10)
    with pytest.raises(AudioFileError, match="corrupt.wav"):
        det.explain(corrupt)
    with pytest.raises(InvalidAudioError):
        det.fit([bad], [clips(1, 0)[0]])


def test_file_path_and_other_rate_are_accepted(setup, tmp_path):
    _, _, det, _ = setup
    x = clips(1, 3)[0]
    path = tmp_path / "x.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    assert det.score(path) == pytest.approx(det.score(x))
    assert isinstance(det.score(x[::2].copy(), sample_rate=8000), float)


def test_save_load_round_trip(setup):
    _, recognizer, det, saved = setup
    again = Detector.load(saved, recognizer)
    assert again.threshold == det.threshold and again.classifier.name == det.classifier.name
    assert again.feature_extractor.to_dict() == det.feature_extractor.to_dict()
    for w in clips(3, 11) + clips(2, 12, noisy=True):
        assert again.score(w) == pytest.approx(det.score(w))


def test_records_the_realization_scheme_and_warns_when_it_differs(setup, monkeypatch, caplog):
    import asrguard.asr.ctc.recognizer as ctc

    root, recognizer, det, _ = setup
    monkeypatch.setattr(ctc, "native_bfloat16", lambda: True)
    saved = det.save(root / "bf16-detector")
    assert json.loads((saved / DOCUMENT_NAME).read_text())["recognizer"]["realization_scheme"] == "pcg64-rows-u16/bfloat16"
    with caplog.at_level("WARNING", logger="asrguard.detect.detector"):
        Detector.load(saved, recognizer)
    assert not caplog.records
    monkeypatch.setattr(ctc, "native_bfloat16", lambda: False)
    with caplog.at_level("WARNING", logger="asrguard.detect.detector"):
        again = Detector.load(saved, recognizer)
    assert "pcg64-rows-u16/bfloat16" in caplog.text and "pcg64-rows-u16/float32" in caplog.text
    assert again.threshold == det.threshold


def test_refuses_a_mismatched_recognizer(setup):
    root, _, _, saved = setup
    other = tiny_recognizer(root, seed=1)
    with pytest.raises(ModelFileError, match="fitted for recogniser"):
        Detector.load(saved, other)


def _copy(saved, dest):
    dest.mkdir()
    for name in (DOCUMENT_NAME, ARRAYS_NAME):
        (dest / name).write_bytes((saved / name).read_bytes())
    return dest


def test_refuses_tampered_files(setup, tmp_path):
    _, recognizer, _, saved = setup
    doc = _copy(saved, tmp_path / "doc")
    document = json.loads((doc / DOCUMENT_NAME).read_text())
    document["threshold"] = 1e9  # silence the detector
    (doc / DOCUMENT_NAME).write_text(json.dumps(document))
    with pytest.raises(ModelFileError, match="modified or is corrupt"):
        Detector.load(doc, recognizer)

    arr = _copy(saved, tmp_path / "arr")
    data = bytearray((arr / ARRAYS_NAME).read_bytes())
    data[-1] ^= 0x01
    (arr / ARRAYS_NAME).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="modified or is corrupt"):
        Detector.load(arr, recognizer)

    garbage = _copy(saved, tmp_path / "garbage")
    (garbage / DOCUMENT_NAME).write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        Detector.load(garbage, recognizer)
    with pytest.raises(ModelFileError, match="expected a detector folder"):
        Detector.load(tmp_path / "missing", recognizer)


def test_unsaved_recognizer_needs_explicit_permission(setup, tmp_path):
    _, recognizer, det, _ = setup
    checksum = recognizer.checksum
    try:
        recognizer.checksum = None
        path = det.save(tmp_path / "unverified")
        with pytest.raises(ModelFileError, match="cannot verify"):
            Detector.load(path, recognizer)
        assert Detector.load(path, recognizer, allow_unverified=True).threshold == det.threshold
    finally:
        recognizer.checksum = checksum


def test_benign_only_fit_uses_one_class_gaussian(setup):
    _, recognizer, _, _ = setup
    det = Detector(recognizer, FeatureExtractor(n=6, p=0.3), "char-svm4", target_fpr=0.2)
    det.fit(clips(6, 4))
    assert det.classifier.name == "gaussian" and det.classifier.one_class
    assert isinstance(det.predict(clips(1, 9, noisy=True)[0]), bool)


def test_threshold_for_fpr_and_unfitted():
    assert threshold_for_fpr([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 0.1) == 8
    assert threshold_for_fpr([1, 1, 1], 0.05) == 1
    with pytest.raises(ConfigError):
        threshold_for_fpr([], 0.05)
