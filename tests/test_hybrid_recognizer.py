"""Hybrid recogniser plumbing and the PGD attack, on small untrained models and generated audio."""

import numpy as np
import pytest
import torch

from asrguard.asr.base import AudioBatch
from asrguard.asr.hybrid.acoustic import KINDS, build_acoustic_model
from asrguard.asr.hybrid.hmm import DigitHMM
from asrguard.asr.hybrid.recognizer import HybridRecognizer
from asrguard.attacks.pgd import PGD, random_digit_targets
from asrguard.errors import ConfigError, ModelFileError
from asrguard.frontend import MFCC



def _audio(seed, n):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = 0.3 * np.sin(2 * np.pi * (300 + 200 * rng.random()) * t) + 0.05 * rng.normal(size=n)
    return (x * np.hanning(n)).astype(np.float32)


@pytest.fixture(scope="module")
def batch():
    return AudioBatch.from_waveforms([_audio(0, 12000), _audio(1, 20000)], 16000)


def _recognizer(kind, seed=0):
    torch.manual_seed(seed)
    return HybridRecognizer(build_acoustic_model(kind), DigitHMM.default())


def test_features_match_reference_front_end_and_ignore_padding(batch):
    rec = _recognizer("fnn")
    feats, lengths = rec.features(batch)
    assert feats.shape[-1] == 351 and lengths.tolist() == [61, 101]
    alone, _ = rec.features(AudioBatch.from_waveforms([batch.unbatch()[0]], 16000))
    torch.testing.assert_close(feats[0, :61], alone[0])
    x = torch.from_numpy(batch.unbatch()[0])
    reference = MFCC(16000, deltas=2, context=4)(x / x.abs().max())
    torch.testing.assert_close(alone[0], reference)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_gives_posteriors_draws_and_reproducible_randomness(kind, batch):
    rec = _recognizer(kind)
    lp, lengths = rec.log_probs(batch)
    assert lp.shape == (2, 101, 95)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(2, 101))
    torch.testing.assert_close(rec.log_probs(batch)[0], lp)  # deterministic outside stochastic()
    with rec.stochastic(seed=3):
        a, _ = rec.log_probs(batch)
    with rec.stochastic(seed=3):
        b, _ = rec.log_probs(batch)
    torch.testing.assert_close(a, b)
    real = rec.realizations(batch.unbatch()[0], 4, seed=1)
    assert real.log_probs.shape == (4, 61, 95) and len(real.transcripts) == 4
    if kind != "fnn":
        assert not torch.allclose(real.log_probs[0], real.log_probs[1])
    assert isinstance(rec.transcribe(batch)[0], str)


def test_loss_accepts_state_tensors_lists_and_transcripts(batch):
    rec = _recognizer("fnn")
    paths = rec.align(batch, ["one two", "three"])
    assert [len(p) for p in paths] == [61, 101]
    from_list = rec.loss(batch, paths)
    padded = torch.full((2, 101), -100, dtype=torch.long)
    padded[0, :61] = torch.from_numpy(paths[0])
    padded[1] = torch.from_numpy(paths[1])
    torch.testing.assert_close(rec.loss(batch, padded), from_list)
    torch.testing.assert_close(rec.loss(batch, ["one two", "three"]), from_list)
    with pytest.raises(ConfigError):
        rec.loss(batch, [paths[0][:10], paths[1]])


def test_checkpoint_roundtrip_and_tamper_detection(tmp_path, batch):
    rec = _recognizer("bnn")
    rec.hmm.insertion_penalty = 7.0
    rec.save(tmp_path / "m")
    again = HybridRecognizer.load(tmp_path / "m")
    torch.testing.assert_close(again.log_probs(batch)[0], rec.log_probs(batch)[0])
    assert again.hmm.insertion_penalty == 7.0
    weights = tmp_path / "m" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        HybridRecognizer.load(tmp_path / "m")


@pytest.mark.parametrize("kind,stochastic", [("fnn", False), ("dropout", True)])
def test_pgd_never_exceeds_eps_and_never_touches_padding(kind, stochastic, batch):
    rec = _recognizer(kind)
    loud = AudioBatch(batch.waveforms * 3.0 / batch.waveforms.abs().max(), batch.lengths, 16000)
    loud = AudioBatch(loud.waveforms.clamp(-1, 1), loud.lengths, 16000)  # samples at +-1: clipping matters
    targets = random_digit_targets(2, seed=0)
    eps = 0.01
    attack = PGD(rec, eps=eps, step_size=0.004, iterations=5, random_init=True, stochastic=stochastic, seed=1)
    result = attack.run(loud, targets)
    delta = result.adversarial.waveforms.double() - loud.waveforms.double()
    assert delta.abs().max().item() <= eps
    assert result.adversarial.waveforms.abs().max().item() <= 1.0
    assert torch.all(delta[0, 12000:] == 0)  # padding of the shorter utterance
    assert max(result.max_abs_delta()) > 0.5 * eps
    assert len(result.loss_history) == 5


def test_pgd_lowers_the_target_loss(batch):
    rec = _recognizer("fnn")
    targets = ["seven", "two nine"]
    attack = PGD(rec, eps=0.05, step_size=0.005, iterations=15)
    result = attack.run(batch, targets)
    first, last = np.mean(result.loss_history[0]), np.mean(result.loss_history[-1])
    assert last < first
    # the state targets came from the original audio, once
    assert [len(s) for s in result.state_targets] == [61, 101]


def test_random_targets_are_seeded_and_avoid_originals():
    a = random_digit_targets(50, seed=3)
    assert a == random_digit_targets(50, seed=3) and a != random_digit_targets(50, seed=4)
    assert all(1 <= len(t.split()) <= 5 for t in a)
    b = random_digit_targets(3, seed=3, avoid=a[:3])
    assert all(x != y for x, y in zip(a[:3], b))


def test_pgd_requires_explicit_settings():
    rec = _recognizer("fnn")
    with pytest.raises(TypeError):
        PGD(rec, eps=0.05)  # step size and iterations have no defaults
    with pytest.raises(ConfigError):
        PGD(rec, eps=2.0, step_size=0.1, iterations=1)
