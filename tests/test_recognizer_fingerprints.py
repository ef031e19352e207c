"""An edited model config.json is refused, or breaks the detector's binding with a clear error, for every recogniser."""

import json
import shutil

import numpy as np
import pytest
import torch

from asrguard.asr.ctc import CTCConfig, CTCRecognizer, config_digest
from asrguard.detect.classifiers import make_classifier
from asrguard.detect.detector import Detector
from asrguard.errors import ModelFileError
from asrguard.uncertainty.features import FeatureExtractor, FeatureTable


def bound_detector(recognizer, folder):
    """A detector fitted (on made-up features: no realisation needed) for ``recognizer``, saved to ``folder``."""
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(10), np.ones(10)].astype(int)
    table = FeatureTable({"char_moments": np.abs(rng.normal(size=(20, 4))) + 3 * labels[:, None]})
    det = Detector(recognizer, FeatureExtractor(n=4, p=0.2), make_classifier("char-svm4"))
    det.fit_features(table.take(labels == 0), table.take(labels == 1)).save(folder)
    return folder


def edit_json(path, change):
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@pytest.fixture
def tiny_ctc(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "ctc"
    CTCRecognizer(CTCConfig(dense_size=16, lstm_size=8)).save(folder)
    return folder


@pytest.mark.parametrize("field, value", [("relu_clip", 1.0), ("f_max", 4000.0)])
def test_an_edited_ctc_config_is_refused(tiny_ctc, field, value):
    def change(document):
        assert document["config"][field] != value
        document["config"][field] = value

    edit_json(tiny_ctc / "config.json", change)
    with pytest.raises(ModelFileError, match="config was modified"):
        CTCRecognizer.load(tiny_ctc)


def test_an_edited_ctc_config_without_its_checksum_is_refused_too(tiny_ctc):
    def change(document):
        document["config"]["relu_clip"] = 1.0
        del document["config_sha256"]  # deleting the line must not let the edit through

    edit_json(tiny_ctc / "config.json", change)
    with pytest.raises(ModelFileError, match="no config_sha256"):
        CTCRecognizer.load(tiny_ctc)


def test_a_re_hashed_ctc_config_breaks_the_detectors_binding(tiny_ctc, tmp_path):
    original = CTCRecognizer.load(tiny_ctc)
    detector = bound_detector(original, tmp_path / "det")
    assert Detector.load(detector, CTCRecognizer.load(tiny_ctc)).threshold is not None

    def change(document):  # an edit with its checksum recomputed: the model loads, as another model
        document["config"]["relu_clip"] = 1.0
        document["config_sha256"] = config_digest(document["config"])

    edit_json(tiny_ctc / "config.json", change)
    edited = CTCRecognizer.load(tiny_ctc)
    assert edited.checksum == original.checksum and edited.fingerprint() != original.fingerprint()
    with pytest.raises(ModelFileError, match="another model config"):
        Detector.load(detector, edited)


def test_the_shipped_detector_still_binds_to_the_shipped_model(tmp_path):
    from asrguard.asr.ctc import DEFAULT_MODEL_DIR
    from asrguard.defaults import DEFAULT_DETECTOR_DIR

    assert Detector.load(DEFAULT_DETECTOR_DIR, CTCRecognizer.load()).threshold is not None
    copy = tmp_path / "shipped"
    shutil.copytree(DEFAULT_MODEL_DIR, copy)
    edit_json(copy / "config.json", lambda document: document["config"].update(f_max=4000.0))
    with pytest.raises(ModelFileError, match="config was modified"):
        CTCRecognizer.load(copy)


def test_an_edited_whisper_config_is_refused_or_changes_the_fingerprint(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from safetensors.torch import save_file

    from asrguard.asr.whisper import WhisperRecognizer
    from asrguard.asr.whisper.convert import bundled_source, config_sha256
    from asrguard.fileio import sha256_file

    try:
        source = bundled_source()
    except ModelFileError as exc:
        pytest.skip(str(exc))
    config = dict(vocab_size=51864, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                  decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_source_positions=1500,
                  max_target_positions=448, decoder_start_token_id=50257, pad_token_id=50256, bos_token_id=50256,
                  eos_token_id=50256, begin_suppress_tokens=[220, 50256])
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**config))
    folder = tmp_path / "whisper"
    folder.mkdir()
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "proj_out.weight"}  # tied
    save_file(state, str(folder / "model.safetensors"))
    shutil.copyfile(source / "tokenizer.json", folder / "tokenizer.json")
    meta = {"weights_sha256": sha256_file(folder / "model.safetensors")}
    # a folder converted before config checksums were recorded: the fingerprint covers the config
    (folder / "config.json").write_text(json.dumps({**config, "asrguard": meta}))
    original = WhisperRecognizer.from_folder(folder)
    detector = bound_detector(original, tmp_path / "det")
    edit_json(folder / "config.json", lambda document: document.update(begin_suppress_tokens=[220]))
    edited = WhisperRecognizer.from_folder(folder)
    assert edited.weights_sha256 == original.weights_sha256 and edited.fingerprint() != original.fingerprint()
    with pytest.raises(ModelFileError, match="fitted for recogniser"):
        Detector.load(detector, edited)
    # a folder converted now records the config's checksum: the edit is refused on load
    meta["config_sha256"] = config_sha256(config)
    (folder / "config.json").write_text(json.dumps({**config, "asrguard": meta}))
    assert WhisperRecognizer.from_folder(folder).fingerprint() == original.fingerprint()
    edit_json(folder / "config.json", lambda document: document.update(begin_suppress_tokens=[220]))
    with pytest.raises(ModelFileError, match="config_sha256 mismatch"):
        WhisperRecognizer.from_folder(folder)


def test_an_edited_hugging_face_config_breaks_the_detectors_binding(tmp_path):
    pytest.importorskip("transformers")
    from test_asr_huggingface import save_tiny

    from asrguard.asr.huggingface import HFCTCRecognizer

    folder = save_tiny(tmp_path / "w2v")
    original = HFCTCRecognizer.from_pretrained(str(folder), local_files_only=True)
    detector = bound_detector(original, tmp_path / "det")
    assert Detector.load(detector, HFCTCRecognizer.from_pretrained(str(folder), local_files_only=True))
    edit_json(folder / "config.json", lambda document: document.update(layer_norm_eps=1e-2))
    edited = HFCTCRecognizer.from_pretrained(str(folder), local_files_only=True)
    assert edited.fingerprint() != original.fingerprint()
    with pytest.raises(ModelFileError, match="fitted for recogniser"):
        Detector.load(detector, edited)
