import dataclasses

import numpy as np
import pytest
import torch

from asrguard.asr.ctc import CTCConfig, CTCRecognizer
from asrguard.attacks.base import config_hash, required_frames
from asrguard.attacks.cw import CWAttack, CWConfig, DRAttack, DRConfig, NRRAttack, NRRConfig, USAttack
from asrguard.attacks.imperceptible import IAConfig, ImperceptibleAttack
from asrguard.attacks.targets import PAPER_TARGET, TargetSampler, random_digit_string
from asrguard.audio import db
from asrguard.errors import ConfigError
from attack_helpers import ToyRecognizer, speechlike


class PaddingGuard(ToyRecognizer):
    """Fails the test if any padding sample ever reaches the loss non-zero."""

    def loss(self, batch, targets):
        padding = batch.mask() == 0
        assert torch.all(batch.waveforms.detach()[padding] == 0), "padding was perturbed"
        return super().loss(batch, targets)


WAVES = [speechlike(0.5, 0), speechlike(0.8, 1), speechlike(0.3, 2)]
TARGETS = ["ab", "hello", "go"]
FAST = dict(tau_db=10, max_shrinks=3)
ATTACKS = [
    (CWAttack, CWConfig(**FAST)),
    (DRAttack, DRConfig(**FAST, draws=2)),
    (NRRAttack, NRRConfig(**FAST)),
    (ImperceptibleAttack, IAConfig(**FAST, stage2_iter=40)),
    (USAttack, CWConfig(**FAST)),
]


@pytest.mark.parametrize("cls,config", ATTACKS, ids=[c.name for c, _ in ATTACKS])
def test_attacks_reach_targets_within_the_db_bound_without_touching_padding(cls, config):
    recognizer = PaddingGuard(gain=5.0)
    results = cls(recognizer, config).generate(WAVES, TARGETS)
    assert [r.success for r in results] == [True, True, True]
    for x, r, t in zip(WAVES, results, TARGETS):
        assert r.waveform.dtype == np.float32 and r.waveform.shape == x.shape
        assert np.abs(r.waveform).max() <= 1.0
        assert r.transcript == t and r.target == t
        assert r.db_x_delta <= -config.tau_db + 1e-6  # the bound holds on the returned audio
        assert abs(r.db_x_delta - (db(r.waveform.astype(np.float64) - x) - db(x))) < 1e-9
        assert r.iterations > 0 and r.wall_seconds >= 0 and np.isfinite(r.snr_db)
        assert r.config["attack"] == cls.name and r.config["config_hash"] == config_hash(config, cls.name)
    if cls is NRRAttack:
        assert all(r.extra["success_spectral_subtraction"] for r in results)
        assert all("success_logmmse" in r.extra for r in results)
    if cls is ImperceptibleAttack:
        assert all(0.0 <= r.extra["masked_energy_share"] <= 1.0 for r in results)


def test_bound_shrinks_per_utterance_and_the_best_success_is_kept():
    results = CWAttack(ToyRecognizer(gain=5.0), CWConfig(tau_db=10, max_shrinks=4)).generate(WAVES, TARGETS)
    for r in results:
        history = r.extra["success_history"]
        assert r.extra["n_successes"] == len(history) >= 1
        # every success shrinks the bound by 0.8 (-1.94 dB); the kept example is the last, smallest one
        assert all(b < a + 1e-9 for (_, a), (_, b) in zip(history, history[1:]))
        assert abs(r.db_x_delta - min(d for _, d in history)) < 1e-3
        assert r.db_x_delta <= -10 + 20 * np.log10(0.8) * (len(history) - 1) + 1e-3


def test_each_utterance_stops_on_its_own_and_batching_does_not_change_results():
    attack = CWAttack(ToyRecognizer(gain=5.0), CWConfig(**FAST))
    together = attack.generate(WAVES, TARGETS)
    alone = [attack.generate([w], [t])[0] for w, t in zip(WAVES, TARGETS)]
    assert [r.iterations for r in together] == [r.iterations for r in alone]
    for a, b in zip(together, alone):
        assert np.allclose(a.waveform, b.waveform, atol=1e-6)


def test_targets_that_do_not_fit_are_refused_and_silence_cannot_be_attacked():
    attack = CWAttack(ToyRecognizer(gain=5.0), CWConfig(tau_db=10, max_iter=10))
    with pytest.raises(ConfigError):
        attack.generate([speechlike(0.1)], [PAPER_TARGET])
    with pytest.raises(ConfigError):
        attack.generate(WAVES, ["ab"])
    silent = attack.generate([np.zeros(8000, np.float32)], ["ab"])[0]
    assert not silent.success and np.all(silent.waveform == 0)


def test_cw_on_a_tiny_ctc_model_keeps_the_bound_and_stays_finite():
    torch.manual_seed(0)
    recognizer = CTCRecognizer(CTCConfig(dense_size=32, lstm_size=16))
    waves = [speechlike(0.6, 3), speechlike(0.4, 4)]
    for attack in (DRAttack(recognizer, DRConfig(tau_db=20, max_iter=6)),
                   ImperceptibleAttack(recognizer, IAConfig(tau_db=20, max_iter=6, stage2_iter=3))):
        for r in attack.generate(waves, ["ab", "c"]):
            assert np.all(np.isfinite(r.waveform)) and r.db_x_delta <= -20 + 1e-6


def test_target_sampler_is_seeded_sized_and_avoids_the_own_transcript():
    sampler = TargetSampler("mixed", seed=3)
    assert sampler.choose("a", 250) == PAPER_TARGET
    short = sampler.choose("b", 40)
    assert required_frames(short) <= sampler.max_fill * 40 and short == sampler.choose("b", 40)
    assert TargetSampler("commands", seed=0, phrases=["stop", "go"]).choose("c", 50, exclude="stop") == "go"
    digits = TargetSampler("digits", seed=1).choose("d", 100)
    assert set(digits.split()) <= set("zero one two three four five six seven eight nine".split())
    assert TargetSampler("paper").choose("e", 30) is None
    assert random_digit_string(np.random.default_rng(0), 2, 2) == random_digit_string(np.random.default_rng(0), 2, 2)


def test_configs_validate_and_hash_stably():
    with pytest.raises(ConfigError):
        CWConfig(shrink=1.5)
    with pytest.raises(ConfigError):
        DRConfig(p_dr=1.0)
    a, b = CWConfig(), CWConfig()
    assert config_hash(a, "cw") == config_hash(b, "cw") != config_hash(dataclasses.replace(b, tau_db=30), "cw")
    assert config_hash(a, "cw") != config_hash(a, "us")


def test_ctc_best_paths_decode_to_their_targets_and_the_margin_vanishes_on_them():
    from asrguard.attacks.cw import alignment_margin, ctc_best_paths

    rng = np.random.default_rng(0)
    log_probs = np.log(rng.dirichlet(np.ones(29), size=(3, 20)))
    lengths = [20, 14, 9]
    labels = [[5, 5, 6], [3], [7, 8, 7]]
    paths = ctc_best_paths(log_probs, lengths, labels)
    for row, n, target in zip(paths, lengths, labels):
        kept = row[:n]
        decoded = [c for j, c in enumerate(kept) if c != 0 and (j == 0 or kept[j - 1] != c)]
        assert decoded == target and np.all(row[n:] == 0)
    # posteriors that put the path label first by a wide margin give a zero margin loss
    peaked = torch.full((3, 20, 29), -20.0).scatter(2, torch.from_numpy(paths)[..., None], 0.0)
    assert torch.all(alignment_margin(peaked, torch.tensor(lengths), torch.from_numpy(paths), 0.5) == 0)
    assert torch.all(alignment_margin(torch.from_numpy(log_probs).float(), torch.tensor(lengths),
                                      torch.from_numpy(paths), 0.5) > 0)


def test_ia_reports_progress_through_its_masking_stage_too():
    config = IAConfig(**FAST, stage2_iter=40)
    attack = ImperceptibleAttack(PaddingGuard(gain=5.0), config)
    reports = []
    attack.on_step = reports.append
    attack.generate(WAVES, TARGETS)
    masking = [r for r in reports if r.phase == "masking"]
    assert reports[0].phase == "" and masking, "the masking stage reported nothing"
    assert all(config.max_iter < r.step <= r.max_steps == config.max_iter + config.stage2_iter for r in masking)
    assert [r.step for r in masking] == sorted(r.step for r in masking)
    assert all(0 <= r.reached <= r.active <= r.batch_size == len(WAVES) for r in masking)
