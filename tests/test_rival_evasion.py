"""Adaptive attackers of the noise-flooding and temporal-dependency detectors (``eot-noise``,
``prefix-consistent``), on a tiny random CTC model and detectors fitted on tiny audio."""

import numpy as np
import pytest
import torch

from asrguard.asr.base import AudioBatch
from asrguard.attacks.combined_evasion import CombinedEvasionAttack, CombinedEvasionConfig
from asrguard.attacks.factory import ATTACKS, make_attack
from asrguard.attacks.losses import flooded
from asrguard.attacks.rival_evasion import (FloodEvasionAttack, FloodEvasionConfig, PrefixEvasionAttack,
                                            RivalEvasionConfig, prefix_target)
from asrguard.audio import db
from asrguard.detect.rivals import NoiseFloodDetector, TemporalDetector
from asrguard.errors import ConfigError
from _detect_helpers import clips, tiny_recognizer
from attack_helpers import speechlike

TARGET = "hi there"
SHORT = dict(tau_db=10.0, max_iter=8, check_every=4, learning_rate=0.2)


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    return tiny_recognizer(tmp_path_factory.mktemp("rival-evasion"))


@pytest.fixture(scope="module")
def flood(rec):
    return NoiseFloodDetector(rec, snr_db=(30.0, 20.0), draws=1, seed=0, target_fpr=0.2).fit(clips(5, 0))


@pytest.fixture(scope="module")
def temporal(rec):
    return TemporalDetector(rec, fractions=(0.5, 0.7), target_fpr=0.2).fit(clips(5, 0))


def _batch(*waveforms):
    return AudioBatch.from_waveforms(list(waveforms), 16000)


def test_flooding_sets_the_snr_of_each_utterance_and_passes_gradients():
    x = torch.tensor(np.stack([speechlike(0.3, seed=1), 0.1 * speechlike(0.3, seed=2)]), requires_grad=True)
    batch = AudioBatch(x, torch.tensor([4800, 3000]), 16000)
    out = flooded(batch, 20.0, (300.0, 4000.0), [np.random.default_rng(0), np.random.default_rng(1)])
    for i, n in enumerate((4800, 3000)):
        noise = (out.waveforms[i, :n] - x[i, :n]).detach().numpy()
        signal = x[i, :n].detach().numpy()
        assert 10 * np.log10(np.mean(signal ** 2) / np.mean(noise ** 2)) == pytest.approx(20.0, abs=0.01)
        assert float(out.waveforms[i, n:].detach().abs().sum()) == 0.0  # padding stays silent
    out.waveforms.sum().backward()
    assert torch.all(x.grad[0] == 1.0)  # noise is a constant: d(out)/dx is 1 where nothing clipped


def test_eot_noise_lowers_its_objective_within_the_bound_with_fresh_noise_each_step(rec, flood):
    attack = FloodEvasionAttack(rec, FloodEvasionConfig(draws_per_step=2, **SHORT), detector=flood)
    x = speechlike(0.5, seed=9)
    assert len(attack.flooded_copies(_batch(x), 0)) == 4  # two SNRs x two draws
    with torch.no_grad():
        first, again, later = (float(attack.objective(_batch(x), [TARGET], s)[0]) for s in (0, 0, 1))
        plain = float(attack.target_loss(_batch(x), [TARGET])[0])
        off = FloodEvasionAttack(rec, FloodEvasionConfig(beta=0.0, **SHORT), detector=flood)
        assert float(off.objective(_batch(x), [TARGET], 0)[0]) == pytest.approx(plain)
    assert first == again and first != later and first > plain
    result = attack.generate([x], [TARGET])[0]
    with torch.no_grad():
        after = float(attack.objective(_batch(result.waveform), [TARGET], 0)[0])
    assert after < first
    assert db(result.waveform.astype(np.float64) - x) <= db(x) - SHORT["tau_db"] + 1e-3
    assert result.extra["noise_flood_flagged"] == (result.extra["noise_flood_score"] > flood.threshold_)


def test_success_asks_the_attackers_own_copy_of_the_detector(rec, flood, tmp_path):
    attack = FloodEvasionAttack(rec, FloodEvasionConfig(**SHORT), detector=flood)
    assert attack.detector is not flood and attack.detector.seed != flood.seed and flood.seed == 0
    assert attack.detector.copy_with_seed(0).fingerprint() == flood.fingerprint()
    x = speechlike(0.5, seed=8)
    said = rec.transcribe([x])[0]
    attack.detector.threshold_ = np.inf
    assert attack.is_success(_batch(x), [said], 0).tolist() == [True]
    attack.detector.threshold_ = -np.inf  # flags everything: the target alone no longer counts
    assert attack.is_success(_batch(x), [said], 0).tolist() == [False]
    score = attack.detector.score(x)
    wary = FloodEvasionAttack(rec, FloodEvasionConfig(score_margin=1.0, **SHORT), detector=flood)
    attack.detector.threshold_ = wary.detector.threshold_ = score + 0.5
    assert attack.is_success(_batch(x), [said], 0).tolist() == [True]
    assert wary.is_success(_batch(x), [said], 0).tolist() == [False]
    # by folder through the factory, or in memory by fingerprint (which joins the config hash)
    built = make_attack("eot-noise", rec, {"detector": str(flood.save(tmp_path / "flood")), "draws_per_step": "1"})
    assert built.config.draws_per_step == 1 and built.detector.copy_with_seed(0).fingerprint() == flood.fingerprint()
    other = NoiseFloodDetector(rec, snr_db=(10.0,), draws=1, target_fpr=0.2).fit(clips(5, 0))
    assert FloodEvasionAttack(rec, detector=other).config_hash != FloodEvasionAttack(rec, detector=flood).config_hash
    assert {"eot-noise", "prefix-consistent"} <= set(ATTACKS)


def test_each_refuses_a_missing_unfitted_or_other_detector(rec, flood, temporal):
    with pytest.raises(ConfigError, match="needs a fitted noise-flood detector"):
        make_attack("eot-noise", rec)
    with pytest.raises(ConfigError, match="needs a fitted noise-flood detector"):
        FloodEvasionAttack(rec, detector=NoiseFloodDetector(rec))
    with pytest.raises(ConfigError, match="needs a fitted temporal detector"):
        PrefixEvasionAttack(rec, detector=flood)
    for bad in (dict(beta=-1.0), dict(score_margin=-0.1), dict(draws_per_step=0)):
        with pytest.raises(ConfigError):
            FloodEvasionConfig(**bad)


def test_prefix_targets_and_cuts_are_the_detectors():
    assert prefix_target("open the door", 0.5) == "open t"
    assert prefix_target("open the door", 0.4) == "open"  # no trailing space
    assert prefix_target("go", 0.1) == "g"


def test_prefix_consistent_attacks_the_first_part_where_the_detector_cuts(rec, temporal):
    attack = PrefixEvasionAttack(rec, RivalEvasionConfig(**SHORT), detector=temporal)
    x, y = speechlike(0.5, seed=3), speechlike(0.31, seed=4)
    batch = _batch(x, y)
    part, starts = attack.prefixes(batch, [TARGET, "stop"], 0.7)
    assert part.lengths.tolist() == [round(0.7 * len(x)), round(0.7 * len(y))] and starts == ["hi the", "sto"]
    assert torch.equal(part.waveforms[1, : part.lengths[1]], batch.waveforms[1, : part.lengths[1]])
    with torch.no_grad():
        plain = attack.target_loss(batch, [TARGET, "stop"])
        full = attack.objective(batch, [TARGET, "stop"], 0)
        parts = torch.stack([attack.target_loss(*attack.prefixes(batch, [TARGET, "stop"], f)) for f in (0.5, 0.7)])
    assert torch.allclose(full, plain + parts.mean(0))
    result = attack.generate([x], [TARGET])[0]
    with torch.no_grad():
        assert float(attack.objective(_batch(result.waveform), [TARGET], 0)[0]) < float(full[0])
    assert result.extra["temporal_flagged"] == (result.extra["temporal_score"] > temporal.threshold_)


def test_the_combined_attack_floods_as_before(rec):
    """The combined attack's flooding moved to losses.flooded: the same seeds give the same copies."""
    from asrguard.detect.combined import CombinedDetector
    det = CombinedDetector(rec, n=4, p=0.3, members=("noise-flood",), target_fpr=0.2).fit(
        clips(4, 0), clips(4, 1, noisy=True))
    attack = CombinedEvasionAttack(rec, CombinedEvasionConfig(**SHORT), detector=det)
    from asrguard.detect.rivals.noise import band_noise
    from asrguard.rng import generator
    x = speechlike(0.3, seed=5)
    copies = attack._flooded(_batch(x), 3)
    for index, snr in enumerate(attack.noise.snr_db):
        rms = np.sqrt(np.mean(x.astype(np.float32) ** 2))
        unit = band_noise(len(x), 16000, attack.noise.band_hz, generator(0, "flood", 3, index, 0))
        expected = np.clip(x + unit.astype(np.float32) * rms / 10 ** (snr / 20), -1, 1)
        np.testing.assert_allclose(copies[index].waveforms[0].numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["distribution", "transform", "temporal", "noise-flood"])
def test_every_rival_copies_itself_under_another_seed(rec, kind):
    from asrguard.detect.registry import make_detector
    settings = {"transforms": "resample,quantize"} if kind == "transform" else {}
    det = make_detector(kind, rec, seed=3, target_fpr=0.2, **settings)
    det.fit(clips(4, 0), clips(4, 1, noisy=True) if det.needs_adversarial else None)
    other, same = det.copy_with_seed(11), det.copy_with_seed(3)
    assert (other.seed, other.threshold_, det.seed) == (11, det.threshold_, 3)
    assert same.fingerprint() == det.fingerprint() and other.fingerprint() != det.fingerprint()
    x = clips(1, 5, noisy=True)[0]
    assert same.score(x) == det.score(x)
