"""The Däubener reproduction's attack stages on tiny untrained models: audio levels, the ensemble's two
attacks, the plan of stages."""

import numpy as np
import pytest
import torch

from asrguard.asr.base import AudioBatch
from asrguard.asr.hybrid.acoustic import build_acoustic_model
from asrguard.asr.hybrid.recognizer import HybridRecognizer
from asrguard.errors import ConfigError
from asrguard.experiments.daubener2020 import (
    MODEL_ORDER, PAPER_ATTACK, AttackSpec, Settings, attack_plan, craft_pgd, level_label, scaled,
)


def _speechlike(seed, n):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = 0.6 * np.sin(2 * np.pi * (250 + 300 * rng.random()) * t) * np.hanning(n) + 0.02 * rng.normal(size=n)
    return np.clip(x, -1, 1).astype(np.float32)


def _recognizer(kind, **kwargs):
    torch.manual_seed(0)
    return HybridRecognizer(build_acoustic_model(kind, **kwargs), frontend={"cmn": True})


@pytest.mark.parametrize("kind,kwargs", [("fnn", {}), ("bnn", {"posterior": "matrix_gaussian"})])
def test_audio_level_leaves_benign_posteriors_unchanged(kind, kwargs):
    # the sweep reuses the level-1 benign scores at every level: peak normalisation makes them equal
    rec = _recognizer(kind, **kwargs)
    waves = [_speechlike(0, 9000), _speechlike(1, 14000)]
    full, lengths = rec.draws(AudioBatch.from_waveforms(waves, 16000), 3, seed=1)
    for level in (0.5, 0.125):
        quiet, quiet_lengths = rec.draws(AudioBatch.from_waveforms(scaled(waves, level), 16000), 3, seed=1)
        assert quiet_lengths.tolist() == lengths.tolist()
        torch.testing.assert_close(quiet, full, atol=2e-4, rtol=0)
    assert [level_label(x) for x in (1.0, 0.25)] == ["1", "1/4"]


def test_ensemble_attacked_through_its_average_or_one_member_per_step():
    rec = _recognizer("ensemble", members=3)
    waves = [_speechlike(2, 8000), _speechlike(3, 11000)]
    targets = ["one two", "nine"]
    settings = Settings(attack=AttackSpec("t", 4, 0.004), attack_batch=2)
    batch = AudioBatch.from_waveforms(waves, 16000)
    state_targets = rec.align(batch, targets)

    def average_loss(audio):
        with torch.no_grad():
            return float(rec.loss(AudioBatch.from_waveforms(audio, 16000), state_targets).sum())

    average, delta = craft_pgd(rec, waves, targets, 0.01, settings, ensemble="average")
    again, _ = craft_pgd(rec, waves, targets, 0.01, settings, ensemble="average")
    member, _ = craft_pgd(rec, waves, targets, 0.01, settings, ensemble="member")
    assert all(np.array_equal(a, b) for a, b in zip(average, again))  # no randomness in the averaged attack
    assert not all(np.array_equal(a, b) for a, b in zip(average, member))
    assert max(delta) <= 0.01
    # the averaged attack lowers the averaged output's loss toward the target at least as well
    assert average_loss(average) < average_loss(waves)
    assert average_loss(average) <= average_loss(member) + 1e-6
    with pytest.raises(ConfigError):
        craft_pgd(rec, waves, targets, 0.01, settings, ensemble="median")


def test_plan_runs_the_headline_first_and_covers_every_table():
    settings = Settings.make(quick=False)
    plan = attack_plan(settings)
    head = [p for p in plan[: 2 * len(MODEL_ORDER)]]
    assert {(p[0], p[1]) for p in head} == {(k, e) for k in MODEL_ORDER for e in settings.table_eps}
    assert all(p[2] == PAPER_ATTACK and p[3] == settings.headline_level and p[5] == settings.n_eval for p in head)
    assert all((p[4] == "average") == (p[0] == "ensemble") for p in head)
    keys = [(p[0], p[1], p[2].name, p[3], p[4]) for p in plan]
    assert len(keys) == len(set(keys))
    levels = {p[3] for p in plan if p[2] == PAPER_ATTACK and p[1] in settings.table_eps}
    assert levels == set(settings.levels)
    assert ("ensemble", 0.02, "paper", settings.headline_level, "member") in keys
    assert {p[0] for p in plan if p[2].name == "converged"} == set(MODEL_ORDER)
    fig1 = {(p[0], p[1]) for p in plan if p[2] == PAPER_ATTACK and p[3] == settings.headline_level}
    assert fig1 >= {(k, e) for k in MODEL_ORDER for e in settings.eps_grid if e > 0}
