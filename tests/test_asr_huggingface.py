"""HFCTCRecognizer on tiny random-weight wav2vec 2.0 / HuBERT models saved to and loaded from a local folder."""

import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="HFCTCRecognizer needs transformers (pip install transformers)")

from asrguard.asr.base import AudioBatch, missing_capabilities  # noqa: E402
from asrguard.asr.huggingface import HFCTCRecognizer  # noqa: E402
from asrguard.attacks.cw import CWAttack, CWConfig  # noqa: E402
from asrguard.errors import ConfigError, ModelFileError  # noqa: E402

VOCAB = ["<pad>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyz'"]
# conv strides 5·4·4 = 80 samples per frame: short test clips still have tens of frames
TINY = dict(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            conv_dim=(16, 16, 16), conv_kernel=(10, 4, 4), conv_stride=(5, 4, 4), num_conv_pos_embeddings=8,
            num_conv_pos_embedding_groups=2, pad_token_id=0)


def save_tiny(directory, kind: str = "wav2vec2"):
    """Save a random tiny CTC model with tokenizer and feature extractor (safetensors only)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(directory / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                                  word_delimiter_token="|")
    torch.manual_seed(0)
    if kind == "wav2vec2":
        # layer-norm variant: trained with attention masks, so padding must not matter
        config = transformers.Wav2Vec2Config(**TINY, feat_extract_norm="layer", do_stable_layer_norm=True)
        model = transformers.Wav2Vec2ForCTC(config)
        masks = True
    else:
        config = transformers.HubertConfig(**TINY, feat_extract_norm="group")
        model = transformers.HubertForCTC(config)
        masks = False
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=masks).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    path = save_tiny(tmp_path_factory.mktemp("hf") / "w2v")
    return HFCTCRecognizer.from_pretrained(str(path), local_files_only=True)


def noise(n: int, seed: int) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).uniform(-1, 1, n)).astype(np.float32)


SHORT, LONG = noise(4000, 0), noise(8000, 1)


def test_loaded_from_safetensors_with_every_capability(rec):
    assert missing_capabilities(rec, "transcribe", "loss", "posteriors", "stochastic") == []
    assert rec.use_attention_mask and rec.do_normalize and not rec.uppercase
    assert rec.blank == 0 and list(rec.vocabulary) == VOCAB
    fingerprint = rec.fingerprint()
    assert len(fingerprint) == 64 and rec.fingerprint() == fingerprint


def test_log_probs_shapes_decode_and_transcripts(rec):
    batch = AudioBatch.from_waveforms([SHORT, LONG], 16000)
    log_probs, lengths = rec.log_probs(batch)
    assert tuple(log_probs.shape) == (2, 99, len(VOCAB)) and lengths.tolist() == [49, 99]
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 99), atol=1e-5)
    transcripts = rec.transcribe([SHORT, LONG])
    assert transcripts == rec.decode(log_probs, lengths)
    assert all(t == rec.normalize_text(t) and "|" not in t and "<" not in t for t in transcripts)


def test_decode_collapses_repeats_drops_blanks_and_splits_words(rec):
    ids = [VOCAB.index(c) for c in ["h", "h", "<pad>", "i", "|", "|", "<pad>", "y", "o", "o", "<pad>", "o"]]
    log_probs = torch.log(torch.eye(len(VOCAB))[ids] + 1e-9)[None]
    assert rec.decode(log_probs, torch.tensor([len(ids)])) == ["hi yoo"]
    assert rec.decode(log_probs, torch.tensor([4])) == ["hi"]


def test_padding_does_not_change_a_shorter_utterances_log_probs(rec):
    padded, lengths = rec.log_probs(AudioBatch.from_waveforms([SHORT, LONG], 16000))
    alone, n = rec.log_probs(AudioBatch.from_waveforms([SHORT], 16000))
    assert int(lengths[0]) == int(n[0])
    assert torch.allclose(padded[0, : int(n[0])], alone[0], atol=1e-4)


def test_normalisation_is_per_utterance_and_scale_free(rec):
    quiet, _ = rec.log_probs(AudioBatch.from_waveforms([0.1 * SHORT], 16000))
    loud, _ = rec.log_probs(AudioBatch.from_waveforms([SHORT], 16000))
    assert torch.allclose(quiet, loud, atol=1e-3)  # zero-mean unit-variance removes the gain


def test_loss_gradient_reaches_the_samples_and_never_the_padding(rec):
    batch = AudioBatch.from_waveforms([SHORT, LONG], 16000)
    waveforms = batch.waveforms.clone().requires_grad_(True)
    loss = rec.loss(batch.with_waveforms(waveforms), ["hello", "it's a test"])
    assert loss.shape == (2,) and torch.isfinite(loss).all() and (loss > 0).all()
    loss.sum().backward()
    grad = waveforms.grad
    assert grad[0, :4000].abs().sum() > 0 and grad[1].abs().sum() > 0
    assert torch.count_nonzero(grad[0, :4000]) > 3900
    assert torch.all(grad[0, 4000:] == 0)


def test_uppercase_vocabulary_takes_lowercase_targets(tmp_path):
    path = save_tiny(tmp_path / "upper")
    (path / "vocab.json").write_text(json.dumps({t.upper() if len(t) == 1 else t: i for i, t in enumerate(VOCAB)}))
    upper = HFCTCRecognizer.from_pretrained(str(path), local_files_only=True)
    assert upper.uppercase
    assert upper.encode("hi there") == [VOCAB.index(c) for c in "hi|there"]
    assert upper.transcribe([SHORT])[0] == upper.transcribe([SHORT])[0].lower()


def test_target_fits_counts_frames_and_repeats_and_unknown_characters_are_refused(rec):
    batch = AudioBatch.from_waveforms([noise(800, 2)], 16000)  # 9 frames
    assert rec.frame_lengths(batch.lengths).tolist() == [9]
    assert rec.target_fits(batch, ["hello"]) == [True]  # 5 labels + 1 for "ll"
    assert rec.target_fits(batch, ["aaaaa"]) == [True]  # 5 + 4 = 9
    assert rec.target_fits(batch, ["aaaaaa"]) == [False]  # 6 + 5 = 11
    assert rec.target_fits(batch, ["abcdefghij"]) == [False]
    assert rec.target_fits(batch, ["héllo"]) == [False]
    with pytest.raises(ConfigError, match="vocabulary lacks"):
        rec.loss(batch, ["héllo"])
    with pytest.raises(ConfigError, match="frames"):
        rec.loss(batch, ["abcdefghij"])


def test_seeded_realizations_reproduce_and_differ_between_seeds(rec):
    deterministic, _ = rec.log_probs(AudioBatch.from_waveforms([SHORT], 16000))
    r1 = rec.realizations(SHORT, n=4, seed=1, p=0.2)
    r2 = rec.realizations(SHORT, n=4, seed=1, p=0.2)
    r3 = rec.realizations(SHORT, n=4, seed=2, p=0.2)
    assert tuple(r1.log_probs.shape) == (4, 49, len(VOCAB)) and r1.length == 49 and len(r1.transcripts) == 4
    assert r1.p == 0.2 and r1.seed == 1
    assert torch.equal(r1.log_probs, r2.log_probs) and r1.transcripts == r2.transcripts
    assert not torch.equal(r1.log_probs, r3.log_probs)
    assert not torch.equal(r1.log_probs[0], r1.log_probs[1])  # each row has its own masks
    assert not torch.allclose(r1.log_probs[0], deterministic[0])
    assert rec.realizations(SHORT, n=2, seed=0).p == 0.1  # the config's hidden_dropout


def test_stochastic_leaves_the_model_and_its_weights_alone(rec):
    before = {k: v.clone() for k, v in rec.model.state_dict().items()}
    batch = AudioBatch.from_waveforms([SHORT], 16000)
    clean, _ = rec.log_probs(batch)
    with torch.no_grad(), rec.stochastic(0.3, seed=5):
        assert not rec.model.training
        noisy_a, _ = rec.log_probs(batch)
    with torch.no_grad(), rec.stochastic(0.3, seed=5):
        noisy_b, _ = rec.log_probs(batch)
    assert torch.equal(noisy_a, noisy_b) and not torch.allclose(noisy_a, clean)
    after, _ = rec.log_probs(batch)
    assert torch.equal(after, clean)  # hooks are gone after the context
    assert all(torch.equal(v, before[k]) for k, v in rec.model.state_dict().items())
    with pytest.raises(ConfigError):
        with rec.stochastic(1.0, seed=0):
            pass
    with pytest.raises(ConfigError, match="integer seed"):  # no fallback to torch's global RNG
        with rec.stochastic(0.3, seed=None):
            pass


def test_cw_attack_runs_on_the_hf_recognizer(rec):
    config = CWConfig(tau_db=10, max_iter=4, check_every=2, max_shrinks=1)
    results = CWAttack(rec, config).generate([SHORT, LONG], ["ab", "hello"])
    for x, r in zip([SHORT, LONG], results):
        assert r.waveform.shape == x.shape and np.isfinite(r.waveform).all()
        assert r.iterations > 0 and r.db_x_delta <= -10 + 1e-6
        assert not np.array_equal(r.waveform, x)


def test_hubert_variant_loads_and_attacks(tmp_path):
    path = save_tiny(tmp_path / "hubert", "hubert")
    hubert = HFCTCRecognizer.from_pretrained(str(path), local_files_only=True)
    assert type(hubert.model).__name__ == "HubertForCTC" and not hubert.use_attention_mask
    assert missing_capabilities(hubert, "transcribe", "loss", "posteriors", "stochastic") == []
    # group-norm front end without masks: padding does change results, as in transformers itself
    batch = AudioBatch.from_waveforms([SHORT, LONG], 16000)
    waveforms = batch.waveforms.clone().requires_grad_(True)
    hubert.loss(batch.with_waveforms(waveforms), ["ab", "cd"]).sum().backward()
    assert waveforms.grad[0, :4000].abs().sum() > 0 and torch.all(waveforms.grad[0, 4000:] == 0)
    r = hubert.realizations(SHORT, n=3, seed=0, p=0.2)
    assert torch.equal(r.log_probs, hubert.realizations(SHORT, n=3, seed=0, p=0.2).log_probs)


def test_missing_model_is_a_model_file_error(tmp_path):
    with pytest.raises(ModelFileError):
        HFCTCRecognizer.from_pretrained(str(tmp_path / "nothing"), local_files_only=True)


def test_pickled_weights_are_refused(tmp_path):
    path = save_tiny(tmp_path / "pickled")
    state = {k: v for k, v in HFCTCRecognizer.from_pretrained(str(path), local_files_only=True).model.state_dict().items()}
    (path / "model.safetensors").unlink()
    torch.save(state, path / "pytorch_model.bin")
    with pytest.raises(ModelFileError):
        HFCTCRecognizer.from_pretrained(str(path), local_files_only=True)
