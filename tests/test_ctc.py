import json

import numpy as np
import pytest
import torch

from asrguard.asr.base import AudioBatch
from asrguard.asr.ctc import (CTCConfig, CTCRecognizer, dropout_keep_masks, greedy_decode, realization_keep_masks,
                              required_frames)
from asrguard.errors import ConfigError, InvalidAudioError, ModelFileError
from conftest import tone


@pytest.fixture(scope="module")
def recognizer():
    torch.manual_seed(0)
    return CTCRecognizer(CTCConfig(dense_size=64, lstm_size=32))


def test_realizations_reproducible_and_varied(recognizer):
    x = tone(300.0, 1.0) + 0.01 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    a = recognizer.realizations(x, 8, seed=3, p=0.3)
    b = recognizer.realizations(x, 8, seed=3, p=0.3)
    c = recognizer.realizations(x, 8, seed=4, p=0.3)
    assert torch.equal(a.log_probs, b.log_probs) and a.transcripts == b.transcripts
    assert not torch.equal(a.log_probs, c.log_probs)
    assert a.log_probs.shape[0] == 8
    # realisations of the same input differ from each other
    assert not torch.allclose(a.log_probs[0], a.log_probs[1])


def test_p_zero_realization_equals_deterministic(recognizer):
    x = tone(500.0, 0.7)
    deterministic, _ = recognizer.log_probs(AudioBatch.from_waveforms([x], 16000))
    realized = recognizer.realizations(x, 2, seed=0, p=0.0, precision="float32").log_probs
    assert torch.allclose(realized[0], deterministic[0], atol=1e-5)
    assert torch.allclose(realized[0], realized[1])
    # bfloat16 rounds the mask-dependent layers: close, not equal
    low = recognizer.realizations(x, 2, seed=0, p=0.0, precision="bfloat16").log_probs
    assert (low[0].exp() - deterministic[0].exp()).abs().max() < 0.02


def test_batched_realizations_equal_dropout_applied_layer_by_layer(recognizer):
    """The fast pass (folded rescaling, time-major masks) computes exactly ``rest`` with those masks."""
    model, n, p, seed = recognizer.model, 5, 0.3, 11
    x = tone(400.0, 0.8) + 0.02 * np.random.default_rng(1).standard_normal(12800).astype(np.float32)
    realized = recognizer.realizations(x, n, seed=seed, p=p, precision="float32").log_probs
    with torch.no_grad():
        features, lengths = model.features(torch.from_numpy(x)[None], torch.tensor([len(x)]))
        hidden = model.first_layer(features).expand(n, -1, -1)
        shapes = [(hidden.shape[1], n, width) for width in model.dropout_widths()]
        kept, keep_probability = dropout_keep_masks(shapes, p, seed)
        drop = iter(k.transpose(0, 1).float() / keep_probability for k in kept)
        hidden = hidden * next(drop)
        for layer in model.dense[1:]:
            hidden = model.clipped_relu(layer(hidden)) * next(drop)
        forward, _ = model.lstm_forward(hidden)
        backward = model.lstm_backward(hidden.flip(1))[0].flip(1)
        hidden = model.clipped_relu(model.post(torch.cat([forward, backward], dim=-1))) * next(drop)
        expected = torch.log_softmax(model.output(hidden), dim=-1)
    assert realized.shape == expected.shape
    assert torch.allclose(realized, expected, atol=1e-4)


def test_keep_masks_have_the_rate_and_depend_only_on_the_seed():
    shapes = [(100, 50, 64), (100, 50, 32)]
    a, keep = dropout_keep_masks(shapes, 0.1, seed=5)
    b, _ = dropout_keep_masks(shapes, 0.1, seed=5)
    c, _ = dropout_keep_masks(shapes, 0.1, seed=6)
    assert [m.shape for m in a] == [torch.Size(s) for s in shapes]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert abs(keep - 0.9) < 2 ** -16
    assert abs(float(torch.cat([m.flatten() for m in a]).float().mean()) - keep) < 0.003
    assert all(bool(m.all()) for m in dropout_keep_masks(shapes, 0.0, seed=5)[0])
    for p, seed in ((1.0, 0), (0.9999999, 0), (0.1, -1)):
        with pytest.raises(ConfigError):
            dropout_keep_masks(shapes, p, seed=seed)


def test_cached_realization_masks_are_prefixes_and_do_not_depend_on_the_cache(monkeypatch):
    import asrguard.asr.ctc.masks as ctc

    monkeypatch.setattr(ctc, "_mask_cache", {})
    widths = [16, 8]
    fresh, keep = dropout_keep_masks([(37, 6, w) for w in widths], 0.2, seed=3)
    # grow the cache in uneven steps (odd row sizes cross 64-bit words), then read back shorter and longer
    for n_frames in (5, 6, 37, 11, 80):
        cached, cached_keep = realization_keep_masks(n_frames, 6, widths, 0.2, seed=3)
        expected, _ = dropout_keep_masks([(n_frames, 6, w) for w in widths], 0.2, seed=3)
        assert cached_keep == keep
        assert all(torch.equal(c, e) for c, e in zip(cached, expected))
    assert all(torch.equal(f, c[:37]) for f, c in zip(fresh, cached))
    odd, _ = realization_keep_masks(9, 3, [5], 0.2, seed=3)  # 15 draws a row: rows straddle words
    assert torch.equal(odd[0], dropout_keep_masks([(9, 3, 5)], 0.2, seed=3)[0][0])
    # past the byte cap nothing more is stored, and the answer is the same
    monkeypatch.setattr(ctc, "_mask_cache", {})
    monkeypatch.setattr(ctc, "MASK_CACHE_BYTES", 6 * 24 * 10)
    big, _ = realization_keep_masks(50, 6, widths, 0.2, seed=3)
    assert all(torch.equal(b, e) for b, e in zip(big, dropout_keep_masks([(50, 6, w) for w in widths], 0.2, seed=3)[0]))
    assert sum(m.numel() for ms in ctc._mask_cache.values() for m in ms) <= ctc.MASK_CACHE_BYTES
    with pytest.raises(ConfigError):
        realization_keep_masks(5, 2, [4], 1.0, seed=0)


def test_realization_masks_in_a_float_type_are_the_bool_masks_as_zeros_and_ones(monkeypatch):
    import asrguard.asr.ctc.masks as ctc

    monkeypatch.setattr(ctc, "_mask_cache", {})
    as_bool, keep = realization_keep_masks(12, 4, [8, 3], 0.3, seed=5)
    for dtype in (torch.bfloat16, torch.float64):
        as_float, float_keep = realization_keep_masks(12, 4, [8, 3], 0.3, seed=5, dtype=dtype)
        assert float_keep == keep
        assert all(f.dtype == dtype and torch.equal(f, b.to(dtype)) for f, b in zip(as_float, as_bool))
    # the byte cap counts bytes, not elements: float64 masks take eight times the room
    monkeypatch.setattr(ctc, "_mask_cache", {})
    monkeypatch.setattr(ctc, "MASK_CACHE_BYTES", 4 * 11 * 12 * 8 - 1)
    realization_keep_masks(12, 4, [8, 3], 0.3, seed=5, dtype=torch.float64)
    assert ctc._mask_cache == {}


def test_realizations_refuse_an_unknown_precision(recognizer):
    with pytest.raises(ConfigError, match="precision"):
        recognizer.realizations(tone(300.0, 0.5), 2, precision="float16")


def test_stochastic_leaves_weights_and_restores(recognizer):
    before = {k: v.clone() for k, v in recognizer.model.state_dict().items()}
    batch = AudioBatch.from_waveforms([tone(200.0, 0.5)], 16000)
    clean, _ = recognizer.log_probs(batch)
    with recognizer.stochastic(0.5, seed=1):
        noisy, _ = recognizer.log_probs(batch)
    after, _ = recognizer.log_probs(batch)
    assert not torch.allclose(clean, noisy)
    assert torch.equal(clean, after)
    assert all(torch.equal(before[k], v) for k, v in recognizer.model.state_dict().items())
    with pytest.raises(ConfigError):
        with recognizer.stochastic(1.5, seed=0):
            pass
    with pytest.raises(ConfigError, match="integer seed"):  # no fallback to torch's global RNG
        with recognizer.stochastic(0.5, seed=None):
            pass
    with pytest.raises(TypeError):
        recognizer.stochastic(0.5)  # the seed is a required keyword


def test_padding_never_leaks_into_outputs_or_gradients(recognizer):
    short, long = tone(300.0, 0.5), tone(700.0, 1.0)
    batch = AudioBatch.from_waveforms([short, long], 16000)
    alone, n = recognizer.log_probs(AudioBatch.from_waveforms([short], 16000))
    together, lengths = recognizer.log_probs(batch)
    assert torch.allclose(together[0, : n[0]], alone[0], atol=1e-5)
    waveforms = batch.waveforms.clone().requires_grad_()
    loss = recognizer.loss(batch.with_waveforms(waveforms), ["a", "b"]).sum()
    loss.backward()
    grad = waveforms.grad
    assert torch.isfinite(grad).all()
    assert grad[0, len(short):].abs().max() == 0
    assert grad[0, : len(short)].abs().max() > 0


def test_loss_refuses_impossible_target(recognizer):
    batch = AudioBatch.from_waveforms([tone(300.0, 0.1)], 16000)
    with pytest.raises(ConfigError, match="needs"):
        recognizer.loss(batch, ["okay google unlock phone and delete files"])
    assert required_frames("okay google") == 12


def test_greedy_decode_merges_repeats_and_blanks():
    frames = [0, 9, 9, 0, 9, 1, 1, 10]  # h h _ h ' ' ' ' i -> "hh i"
    lp = torch.log(torch.eye(29)[frames] + 1e-9)[None]
    assert greedy_decode(lp, torch.tensor([8])) == ["hh i"]


def test_save_load_roundtrip_and_tamper(recognizer, tmp_path):
    recognizer.save(tmp_path / "m", metadata={"note": "test"})
    loaded = CTCRecognizer.load(tmp_path / "m")
    x = tone(400.0, 0.5)
    assert loaded.transcribe([x]) == recognizer.transcribe([x])
    assert loaded.metadata["note"] == "test"
    weights = tmp_path / "m" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        CTCRecognizer.load(tmp_path / "m")
    with pytest.raises(ModelFileError, match="expected config.json"):
        CTCRecognizer.load(tmp_path / "nothing")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["version"] == 1 and "checksum_sha256" in config


def test_recognizer_validates_input(recognizer):
    with pytest.raises(InvalidAudioError):
        recognizer.transcribe([np.array([np.nan, 0.0], dtype=np.float32)])
    with pytest.raises(InvalidAudioError, match="expects 16000"):
        recognizer.transcribe(AudioBatch.from_waveforms([tone(rate=8000)], 8000))
    with pytest.raises(InvalidAudioError):
        recognizer.realizations(np.zeros(0, dtype=np.float32), 4)


def test_realization_weights_follow_in_place_weight_changes():
    torch.manual_seed(1)
    rec = CTCRecognizer(CTCConfig(dense_size=32, lstm_size=16))
    x = tone(300.0, 0.5)
    before = rec.realizations(x, 3, seed=0, precision="float32").log_probs
    with torch.no_grad():
        rec.model.output.bias[1] += 5.0  # in place: same storage, new version
    after = rec.realizations(x, 3, seed=0, precision="float32").log_probs
    deterministic, _ = rec.log_probs(AudioBatch.from_waveforms([x], 16000))
    assert not torch.allclose(before, after)
    assert torch.allclose(rec.realizations(x, 3, seed=0, p=0.0, precision="float32").log_probs[0],
                          deterministic[0], atol=1e-5)


@pytest.mark.parametrize("field, value", [("relu_clip", 1.0), ("f_max", 4000.0)])
def test_an_edited_model_config_is_refused_like_edited_weights(tmp_path, field, value):
    import shutil

    from asrguard.asr.ctc import DEFAULT_MODEL_DIR

    folder = tmp_path / "shipped"
    shutil.copytree(DEFAULT_MODEL_DIR, folder)
    document = json.loads((folder / "config.json").read_text())
    assert field in document["config"] and document["config"][field] != value
    document["config"][field] = value
    (folder / "config.json").write_text(json.dumps(document))
    with pytest.raises(ModelFileError, match="config was modified"):
        CTCRecognizer.load(folder)
