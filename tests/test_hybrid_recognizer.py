"""Hybrid recogniser plumbing and the PGD attack, on small untrained models and generated audio."""

import numpy as np
import pytest
import torch

from asrguard.asr.base import AudioBatch
from asrguard.asr.hybrid.acoustic import KINDS, build_acoustic_model
from asrguard.asr.hybrid.hmm import DigitHMM
from asrguard.asr.hybrid.recognizer import HybridRecognizer
from asrguard.attacks.factory import make_attack
from asrguard.attacks.pgd import PGDAttack, PGDConfig, random_digit_targets
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
    with pytest.raises(ConfigError, match="integer seed"):  # no fallback to torch's global RNG
        with rec.stochastic(seed=None):
            pass
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
    loss = rec.loss

    def guarded(audio, targets):
        assert torch.all(audio.waveforms.detach()[audio.mask() == 0] == 0), "padding was perturbed"
        return loss(audio, targets)

    rec.loss = guarded
    loud = AudioBatch(batch.waveforms * 3.0 / batch.waveforms.abs().max(), batch.lengths, 16000)
    loud = AudioBatch(loud.waveforms.clamp(-1, 1), loud.lengths, 16000)  # samples at +-1: clipping matters
    targets = random_digit_targets(2, seed=0)
    eps = 0.01
    config = PGDConfig(eps=eps, step_size=0.004, iterations=5, random_init=True, stochastic=stochastic, seed=1)
    results = PGDAttack(rec, config).generate(loud, targets)
    for x, r, target in zip(loud.unbatch(), results, targets):
        delta = r.waveform.astype(np.float64) - x.astype(np.float64)
        assert r.waveform.shape == x.shape and np.abs(delta).max() <= eps
        assert np.abs(r.waveform).max() <= 1.0
        assert r.extra["max_abs_delta"] == np.abs(r.waveform - x).max()
        assert len(r.extra["loss_history"]) == r.iterations == 5
        assert r.target == target and isinstance(r.transcript_dropout, str)
    assert max(r.extra["max_abs_delta"] for r in results) > 0.5 * eps


def test_pgd_lowers_the_target_loss_toward_states_aligned_on_the_original_audio(batch):
    rec = _recognizer("fnn")
    targets = ["seven", "two nine"]
    attack = PGDAttack(rec, PGDConfig(eps=0.05, step_size=0.005, iterations=15))
    states = attack.state_targets(batch, targets)
    assert [len(s) for s in states] == [61, 101]
    results = attack.generate(batch, targets)
    history = np.array([r.extra["loss_history"] for r in results])  # (utterance, step)
    assert history[:, -1].mean() < history[:, 0].mean()
    # the first step starts at the original audio, toward the states aligned on it
    np.testing.assert_array_equal(history[:, 0], rec.loss(batch, states).detach().numpy())
    given = attack.generate(batch, targets, state_targets=states)
    assert all(np.array_equal(a.waveform, b.waveform) for a, b in zip(results, given))


def test_random_targets_are_seeded_and_avoid_originals():
    a = random_digit_targets(50, seed=3)
    assert a == random_digit_targets(50, seed=3) and a != random_digit_targets(50, seed=4)
    assert all(1 <= len(t.split()) <= 5 for t in a)
    b = random_digit_targets(3, seed=3, avoid=a[:3])
    assert all(x != y for x, y in zip(a[:3], b))


def test_pgd_requires_explicit_settings_also_by_name():
    rec = _recognizer("fnn")
    with pytest.raises(TypeError):
        PGDConfig(eps=0.05)  # step size and iterations have no defaults
    with pytest.raises(ConfigError):
        PGDConfig(eps=2.0, step_size=0.1, iterations=1)
    with pytest.raises(ConfigError, match="needs the setting"):
        make_attack("pgd", rec, {"eps": "0.05"})
    attack = make_attack("pgd", rec, {"eps": "0.05", "step_size": "0.005", "iterations": "3", "stochastic": "yes"})
    assert isinstance(attack, PGDAttack)
    assert attack.config == PGDConfig(eps=0.05, step_size=0.005, iterations=3, stochastic=True)
