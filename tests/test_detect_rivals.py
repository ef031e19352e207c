"""The four rival detectors and the combined one behind the Detector API, on a tiny CTC model and generated audio."""

import json
import math

import numpy as np
import pytest
import soundfile as sf

from asrguard.detect.detector import ARRAYS_NAME, DOCUMENT_NAME, Detector
from asrguard.detect.registry import FEATURE_DETECTORS, load_detector, make_detector
from asrguard.detect.rivals import (DistributionDetector, NoiseFloodDetector, TemporalDetector, TransformDetector,
                                    transcript_distance)
from asrguard.detect.rivals.base import TIE_BREAK
from asrguard.errors import AudioFileError, ConfigError, InvalidAudioError, MissingCapabilityError, ModelFileError
from asrguard.evaluate.detection import auroc
from _detect_helpers import TranscribeOnly, clips, tiny_recognizer

KINDS = list(FEATURE_DETECTORS)
BENIGN, ADVERSARIAL = clips(6, 0), clips(6, 1, noisy=True)
SMALL = {"combined": {"n": 8, "p": 0.3}}  # 8 dropout realisations keep its tests as fast as the others'


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rivals")
    recognizer = tiny_recognizer(root)
    detectors, saved = {}, {}
    for kind in KINDS:
        det = make_detector(kind, recognizer, target_fpr=0.2, seed=0, **SMALL.get(kind, {}))
        assert det.fit(BENIGN, ADVERSARIAL) is det
        detectors[kind] = det
        saved[kind] = det.save(root / kind)
    return root, recognizer, detectors, saved


def _copy(folder, to):
    to.mkdir()
    for f in folder.iterdir():
        (to / f.name).write_bytes(f.read_bytes())
    return to


@pytest.mark.parametrize("kind", KINDS)
def test_fit_score_predict_explain(setup, kind):
    _, recognizer, detectors, _ = setup
    det = detectors[kind]
    assert det.kind == kind and isinstance(det.threshold_, float) and det.metadata["n_benign"] == 6
    # the threshold flags at most the target share of the benign examples it was calibrated on
    benign_scores = [det.score(w) for w in BENIGN]
    assert sum(s > det.threshold_ for s in benign_scores) <= math.floor(det.target_fpr * len(BENIGN))
    x = clips(1, 7)[0]
    score = det.score(x)
    assert isinstance(score, float) and det.score(x) == score
    assert det.predict(x) == (score > det.threshold_)
    info = det.explain(x)
    json.dumps(info)  # JSON-ready
    assert info["detector"] == kind and info["score"] == score and info["threshold"] == det.threshold_
    assert info["verdict"] == ("adversarial" if score > det.threshold_ else "benign")
    assert list(info["features"]) == det.feature_names
    assert info["realizations"] == det.passes == sum(r["count"] for r in info["distinct"]) == sum(info["histogram"])
    assert info["transcript"] == recognizer.transcribe([x])[0]


@pytest.mark.parametrize("kind", ["transform", "temporal", "noise-flood"])
def test_transcript_evidence_is_what_the_score_is_made_of(setup, kind):
    _, recognizer, detectors, _ = setup
    det = detectors[kind]
    for x in clips(2, 8) + clips(2, 9, noisy=True):
        info = det.explain(x)
        compared = info["evidence"]["compared"]
        for row, value in zip(compared, info["features"].values()):
            other = row["prefix"] if kind == "temporal" else info["transcript"]
            assert row["distance"] == value == transcript_distance(other, row["transcript"])
        values = np.array(list(info["features"].values()))
        expected = values.mean() if kind == "noise-flood" else values.max() + TIE_BREAK * values.mean()
        assert info["score"] == pytest.approx(expected)
    # the transformed copies the transform detector transcribes are the ones its transform() gives
    if kind == "transform":
        x = clips(1, 10)[0]
        copies = [det.transform(name, x) for name in det.transforms]
        shown = [r["transcript"] for r in det.explain(x)["evidence"]["compared"]]
        assert recognizer.transcribe([x] + copies)[1:] == shown


def test_distribution_classifier_separates_the_training_groups(setup):
    _, _, detectors, _ = setup
    det = detectors["distribution"]
    assert det.rule == "distribution-logistic" and det.coef_.shape == (24,)
    scores = [det.score(w) for w in BENIGN + ADVERSARIAL]
    assert auroc([0] * 6 + [1] * 6, scores) > 0.5


def test_distribution_falls_back_to_the_one_class_gaussian_without_adversarial_examples(setup, tmp_path):
    _, recognizer, _, _ = setup
    det = DistributionDetector(recognizer).fit(BENIGN)
    assert det.rule == "distribution-gaussian" and det.gaussian_ is not None and det.coef_ is None
    again = load_detector(det.save(tmp_path / "g"), recognizer)
    for w in clips(3, 11):
        assert again.score(w) == det.score(w)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_gives_identical_scores(setup, kind):
    _, recognizer, detectors, saved = setup
    det = detectors[kind]
    document = json.loads((saved[kind] / DOCUMENT_NAME).read_text())
    assert document["kind"] == kind and document["recognizer"]["checksum_sha256"] == recognizer.fingerprint()
    again = load_detector(saved[kind], recognizer)
    assert type(again) is type(det) and again.settings() == det.settings()
    assert again.threshold_ == det.threshold_ and again.metadata == det.metadata
    for w in clips(3, 12) + clips(2, 13, noisy=True):
        assert again.score(w) == det.score(w)


@pytest.mark.parametrize("kind", KINDS)
def test_tampered_or_mismatched_files_are_refused(setup, kind, tmp_path):
    root, recognizer, _, saved = setup
    doc = _copy(saved[kind], tmp_path / "doc")
    document = json.loads((doc / DOCUMENT_NAME).read_text())
    document["threshold"] = -99.0
    (doc / DOCUMENT_NAME).write_text(json.dumps(document))
    with pytest.raises(ModelFileError, match="modified or is corrupt"):
        load_detector(doc, recognizer)
    arrays = _copy(saved[kind], tmp_path / "arrays")
    (arrays / ARRAYS_NAME).write_bytes((arrays / ARRAYS_NAME).read_bytes() + b" ")
    with pytest.raises(ModelFileError, match="modified or is corrupt"):
        load_detector(arrays, recognizer)
    with pytest.raises(ModelFileError, match="fitted for recogniser"):
        load_detector(saved[kind], tiny_recognizer(tmp_path, seed=1))
    with pytest.raises(ModelFileError, match="not a dropout-uncertainty one"):
        Detector.load(saved[kind], recognizer)
    other = TemporalDetector if kind != "temporal" else TransformDetector
    with pytest.raises(ModelFileError, match=f"a '{kind}' detector"):
        other.load(saved[kind], recognizer)


def test_seeded_randomness_reproduces_and_follows_the_seed(setup):
    _, recognizer, _, _ = setup
    x = clips(1, 14)[0]
    a, b, c = (NoiseFloodDetector(recognizer, seed=s) for s in (3, 3, 4))
    assert all(np.array_equal(u, v) for u, v in zip(a.noisy_copies(x), b.noisy_copies(x)))
    assert not any(np.array_equal(u, v) for u, v in zip(a.noisy_copies(x), c.noisy_copies(x)))
    assert np.array_equal(a.features(x), b.features(x))
    t3, t4 = TransformDetector(recognizer, seed=3), TransformDetector(recognizer, seed=4)
    for name in ("mel", "lpc"):  # the randomised transforms follow the seed
        assert np.array_equal(t3.transform(name, x), TransformDetector(recognizer, seed=3).transform(name, x))
        assert not np.array_equal(t3.transform(name, x), t4.transform(name, x))
    for name in ("resample", "quantize"):  # the others have no randomness
        assert np.array_equal(t3.transform(name, x), t4.transform(name, x))


def test_a_secret_seed_is_never_reported_or_saved(setup, tmp_path):
    _, recognizer, _, _ = setup
    det = NoiseFloodDetector(recognizer, seed=5).fit(BENIGN)
    det.set_mask_seed("random")
    assert det.reported_mask_seed == "secret" and det.explain(BENIGN[0])["seed"] == "secret"
    assert str(det.seed) not in repr(det) and "'secret'" in repr(det)
    with pytest.raises(ConfigError, match="secret seed"):
        det.save(tmp_path / "secret")
    assert det.set_mask_seed(7).reported_mask_seed == 7
    with pytest.raises(ConfigError, match="non-negative integer"):
        det.set_mask_seed("seven")


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_is_refused_with_a_clear_error(setup, kind, tmp_path):
    _, recognizer, detectors, _ = setup
    det = detectors[kind]
    bad = np.full(800, np.nan, dtype=np.float32)
    for call in (det.score, det.predict, det.explain, det.features):
        with pytest.raises(InvalidAudioError, match="NaN"):
            call(bad)
    with pytest.raises(InvalidAudioError, match=r"\[-1, 1\]"):
        det.score(np.full(800, 3.0, dtype=np.float32))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00junk" * 10)
    with pytest.raises(AudioFileError, match="corrupt.wav"):
        det.explain(corrupt)
    with pytest.raises(InvalidAudioError):
        make_detector(kind, recognizer).fit([bad], [BENIGN[0]])
    with pytest.raises(ConfigError, match="no benign examples"):
        make_detector(kind, recognizer).fit([], [BENIGN[0]])
    with pytest.raises(ConfigError, match="not fitted"):
        make_detector(kind, recognizer).score(BENIGN[0])


def test_file_paths_and_other_rates_are_accepted(setup, tmp_path):
    _, _, detectors, _ = setup
    det = detectors["transform"]
    x = clips(1, 15)[0]
    path = tmp_path / "x.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    assert det.score(path) == det.score(x)
    assert isinstance(det.score(x[::2].copy(), sample_rate=8000), float)


@pytest.mark.parametrize("kind, settings, match", [
    ("transform", {"transforms": ["blur"]}, "transforms must be distinct names"),
    ("transform", {"transforms": ["mel", "mel"]}, "transforms must be distinct names"),
    ("transform", {"bits": 0}, "bits must be in"),
    ("transform", {"low_rate": 16000}, "must be below"),
    ("transform", {"reduce": "median"}, "reduce must be one of"),
    ("temporal", {"fractions": [1.5]}, r"fractions must be numbers in \(0, 1\)"),
    ("noise-flood", {"band_hz": [4000, 300]}, "band_hz must be"),
    ("noise-flood", {"draws": 0}, "draws must be a positive integer"),
    ("distribution", {"model": "forest"}, "unknown distribution model"),
    ("distribution", {"target_fpr": 1.0}, "target_fpr"),
    ("temporal", {"seed": -1}, "seed must be a non-negative integer"),
    ("temporal", {"window": 3}, "has no setting 'window'"),
])
def test_bad_settings_are_refused_when_built(setup, kind, settings, match):
    _, recognizer, _, _ = setup
    with pytest.raises(ConfigError, match=match):
        make_detector(kind, recognizer, **settings)


def test_capabilities_are_checked_when_built(setup):
    _, recognizer, detectors, _ = setup
    limited = TranscribeOnly(recognizer)
    with pytest.raises(MissingCapabilityError, match="distribution detector needs a recogniser with posteriors"):
        DistributionDetector(limited)
    # the transcript-based rivals need only transcripts, and see nothing else of the recogniser
    x = clips(1, 16)[0]
    for kind in ("transform", "temporal", "noise-flood"):
        assert np.array_equal(make_detector(kind, limited).features(x), detectors[kind].features(x))
