"""Adaptive attackers of the other detector families: EOT over secret dropout masks, BPDA through the
transformation detector's transforms, and a penalty on the distribution detector's statistics."""

import dataclasses

import numpy as np
import pytest
import torch

from asrguard.asr.base import AudioBatch
from asrguard.attacks.evasion import (BPDATransformAttack, BPDATransformConfig, EOTDropoutAttack, EOTDropoutConfig,
                                      bpda, realization_disagreement)
from asrguard.attacks.base import config_hash
from asrguard.attacks.cw import CWAttack, CWConfig
from asrguard.attacks.factory import ATTACKS, make_attack
from asrguard.attacks.stats_penalty import StatsPenaltyAttack, StatsPenaltyConfig, utterance_features_torch
from asrguard.audio import db
from asrguard.detect.rivals import DistributionDetector, TransformDetector
from asrguard.detect.rivals.distribution import utterance_features
from asrguard.detect.rivals.transforms import down_up, down_up_torch, random_settings
from asrguard.errors import ConfigError, MissingCapabilityError
from asrguard.rng import derive
from _detect_helpers import clips, tiny_recognizer
from attack_helpers import ToyRecognizer, speechlike

TARGET = "hi"
SHORT = dict(tau_db=10.0, max_iter=8, check_every=4, learning_rate=0.2)


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    """A tiny random CTC model, saved and reloaded so that a detector can bind to its checksum."""
    return tiny_recognizer(tmp_path_factory.mktemp("evasion"))


def _batch(*waveforms):
    return AudioBatch.from_waveforms(list(waveforms), 16000)


def _descends(attack, x, step=0):
    """The attack's own objective (the same step, so the same random draws) at x and at its output."""
    result = attack.generate([x], [TARGET])[0]
    with torch.no_grad():
        before = float(attack.objective(_batch(x), [TARGET], step)[0])
        after = float(attack.objective(_batch(result.waveform), [TARGET], step)[0])
    assert after < before
    assert db(result.waveform.astype(np.float64) - x) <= db(x) - attack.config.tau_db + 1e-3  # CW's bound
    return result


class Partial:
    """A recogniser with only some capabilities: the toy's methods named in ``methods``, nothing else."""

    sample_rate = 16000

    def __init__(self, *methods):
        toy = ToyRecognizer()
        for name in methods:
            setattr(self, name, getattr(toy, name))


LOSS_ONLY = ("transcribe", "fingerprint", "normalize_text", "loss", "target_fits")  # like an ART estimator


def test_each_attack_refuses_a_recogniser_without_what_it_needs():
    with pytest.raises(MissingCapabilityError, match="eot-dropout attack needs a recogniser with stochastic"):
        EOTDropoutAttack(Partial(*LOSS_ONLY))
    with pytest.raises(MissingCapabilityError, match="stats-penalty attack needs a recogniser with posteriors"):
        StatsPenaltyAttack(Partial(*LOSS_ONLY), StatsPenaltyConfig(gamma=0.0))
    random = Partial(*LOSS_ONLY, "stochastic", "realizations")  # dropout, but no per-step posteriors
    EOTDropoutAttack(random, EOTDropoutConfig(gamma=0.0))  # the penalty is what needs posteriors
    with pytest.raises(MissingCapabilityError, match="disagreement penalty .* posteriors"):
        EOTDropoutAttack(random, EOTDropoutConfig(gamma=0.5))
    BPDATransformAttack(Partial(*LOSS_ONLY), BPDATransformConfig(transforms="quantize"))  # transcripts + a loss


@pytest.mark.parametrize("bad", [dict(p=0.0), dict(masks_per_step=0), dict(gamma=0.1, masks_per_step=1),
                                 dict(required_fraction=0.0), dict(n_check=-1)])
def test_eot_settings_are_checked(bad):
    with pytest.raises(ConfigError):
        EOTDropoutConfig(**bad)


def test_eot_draws_fresh_masks_each_step_and_lowers_its_objective(rec):
    x = speechlike(0.5, seed=1)
    attack = EOTDropoutAttack(rec, EOTDropoutConfig(masks_per_step=2, gamma=0.5, n_check=2, **SHORT))
    batch = _batch(x)
    with torch.no_grad():
        step1, again, step2 = (float(attack.objective(batch, [TARGET], s)[0]) for s in (1, 1, 2))
        plain = float(attack.target_loss(batch, [TARGET])[0])
    assert step1 == again and step1 != step2 and step1 > plain
    result = _descends(attack, x)
    assert 0.0 <= result.extra["eot_target_fraction"] <= 1.0


def test_on_a_steerable_toy_each_reaches_what_plain_cw_misses():
    # the toy is linear in its frames, so 300 steps suffice to reach a target and its defences;
    # CW under the same bound reaches the target but neither the fresh realisations nor every transform
    rec, x = ToyRecognizer(gain=6.0), speechlike(0.4, seed=3)
    common = dict(tau_db=10.0, max_iter=300, check_every=5, learning_rate=0.2)
    eot = EOTDropoutAttack(rec, EOTDropoutConfig(p=0.3, n_check=12, gamma=0.5, required_fraction=1.0, **common))
    bpda_attack = BPDATransformAttack(rec, BPDATransformConfig(transforms="resample,quantize", low_rate=4000,
                                                               bits=6, **common))
    plain = CWAttack(rec, CWConfig(**common)).generate([x], ["ab"])[0]
    assert plain.success
    held_out = 12345  # a seed neither the training draws nor the checks used
    result = eot.generate([x], ["ab"])[0]
    assert result.success and result.extra["eot_target_fraction"] == 1.0
    assert eot.target_fraction(result.waveform, "ab", held_out) > eot.target_fraction(plain.waveform, "ab", held_out)
    result = bpda_attack.generate([x], ["ab"])[0]
    assert result.success and result.extra["success_all_transforms"]
    assert not bpda_attack.extra_measures(x, plain.waveform, "ab")["success_all_transforms"]
    for r in (plain, result):
        assert db(r.waveform.astype(np.float64) - x) <= db(x) - 10.0 + 1e-3


def test_disagreement_is_zero_for_equal_draws_and_positive_otherwise():
    a, b = torch.log_softmax(torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(0)), -1).unbind(0)
    lengths = [torch.tensor([6]), torch.tensor([4])]  # the shorter pass bounds the steps compared
    assert float(realization_disagreement([a[None], a[None]], lengths)[0]) == pytest.approx(0.0, abs=1e-9)
    mixed = realization_disagreement([a[None], b[None]], lengths)
    p, q = a[:4].exp(), b[:4].exp()
    m = (p + q) / 2  # two draws: D is their Jensen-Shannon divergence per step
    js = 0.5 * (p * (p / m).log()).sum(-1) + 0.5 * (q * (q / m).log()).sum(-1)
    assert float(mixed[0]) == pytest.approx(float(js.mean()), rel=1e-5)


@pytest.mark.parametrize("name", ["mel", "lpc", "quantize", "resample"])
def test_bpda_forward_is_the_detectors_transform_and_backward_is_identity_or_its_twin(rec, name):
    config = BPDATransformConfig(transforms=name, transform_seed=3, griffin_lim_iterations=4)
    attack = BPDATransformAttack(rec, config)
    detector = TransformDetector(rec, transforms=(name,), griffin_lim_iterations=4, seed=3)
    long, short = speechlike(0.3, seed=2), speechlike(0.2, seed=4)
    waveforms = AudioBatch.from_waveforms([long, short], 16000).waveforms.requires_grad_(True)
    out = attack.transformed(AudioBatch(waveforms, torch.tensor([len(long), len(short)]), 16000), name)
    for i, x in enumerate((long, short)):  # each utterance alone, padding left at zero
        assert np.array_equal(out.waveforms[i, : len(x)].detach().numpy(), detector.transform(name, x))
    assert not out.waveforms[1, len(short):].any()
    weights = torch.randn(out.waveforms.shape, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad((out.waveforms * weights).sum(), waveforms)
    if name == "resample":  # linear: backpropagated through its torch twin
        x = torch.from_numpy(long).double().requires_grad_(True)
        twin = down_up_torch(x, 16000)
        assert torch.allclose(twin, torch.from_numpy(down_up(long, 16000)).double(), atol=1e-6)
        (expected,) = torch.autograd.grad((twin * weights[0, : len(long)].double()).sum(), x)
        assert torch.allclose(grad[0, : len(long)].double(), expected, atol=1e-5)
    else:
        assert torch.equal(grad[0, : len(long)], weights[0, : len(long)])
        assert torch.equal(grad[1, : len(short)], weights[1, : len(short)])


def test_bpda_helper_and_settings_from_a_detector(rec):
    x = torch.tensor([0.26, -0.74], requires_grad=True)
    y = bpda(x, lambda v: torch.round(v * 2) / 2)
    assert y.tolist() == [0.5, -0.5] and torch.autograd.grad(y.sum(), x)[0].tolist() == [1.0, 1.0]
    det = TransformDetector(rec, transforms=("lpc", "quantize"), bits=6, seed=9)
    config = BPDATransformConfig.from_detector(det, beta=2.0)
    assert (config.transforms, config.bits, config.transform_seed, config.beta, config.seed) == (
        "lpc,quantize", 6, 9, 2.0, 0)
    secret = BPDATransformConfig.from_detector(det.set_mask_seed("random"), seed=3)
    assert secret.fresh_seeds
    # a secret seed is never used: success is checked under a seed of the attacker's own
    attack = BPDATransformAttack(rec, secret)
    assert attack.check_seed() == derive(3, "bpda-check") != secret.transform_seed
    x = speechlike(0.3, seed=2)
    batch = AudioBatch.from_waveforms([x], 16000)
    attack.transformed(batch, "lpc")
    assert attack.transformer.seed == attack.check_seed()
    own = TransformDetector(rec, transforms=("lpc", "quantize"), bits=6, seed=attack.check_seed())
    assert np.array_equal(attack.transformed(batch, "lpc").waveforms[0].detach().numpy(), own.transform("lpc", x))
    known = BPDATransformAttack(rec, BPDATransformConfig.from_detector(det.set_mask_seed(9)))
    assert known.check_seed() == 9


def test_bpda_against_randomised_settings_transforms_as_the_detector_does(rec):
    det = TransformDetector(rec, transforms=("resample", "quantize"), randomize=True, seed=4)
    attack = BPDATransformAttack(rec, BPDATransformConfig.from_detector(det))
    assert attack.config.randomize and attack.transformer.randomize
    # without the setting a folder keeps the name it had before the setting existed
    plain = BPDATransformAttack(rec, BPDATransformConfig(transforms="resample,quantize", transform_seed=4))
    data = dataclasses.asdict(plain.config)
    for later in ("randomize", "measure", "reduce", "score_limit"):
        del data[later]
    assert plain.config_hash == config_hash(data, "bpda-transform") != attack.config_hash
    x = torch.tensor(speechlike(0.3, seed=4), requires_grad=True)
    batch = AudioBatch.from_waveforms([x], 16000, validate=False)
    y = attack.transformed(batch, "resample").waveforms[0]
    drawn = random_settings("resample", x.detach().numpy(), 4)["low_rate"]
    assert np.array_equal(y.detach().numpy(), down_up(x.detach().numpy(), 16000, low_rate=drawn))
    weights = torch.linspace(-1, 1, len(x))
    (grad,) = torch.autograd.grad((y * weights).sum(), x)
    (twin,) = torch.autograd.grad((down_up_torch(x, 16000, low_rate=drawn) * weights).sum(), x)
    assert torch.allclose(grad, twin, atol=1e-6)
    for bad in ("mel,mel", "mel,echo", ""):
        with pytest.raises(ConfigError):
            BPDATransformConfig(transforms=bad)


def test_bpda_against_the_likelihood_measure_needs_the_detectors_own_score_under_its_threshold(rec):
    det = TransformDetector(rec, transforms=("resample", "quantize"), measure="likelihood", reduce="mean", seed=4)
    with pytest.raises(ConfigError, match="fit"):
        BPDATransformConfig.from_detector(det)
    with pytest.raises(ConfigError, match="score_limit"):
        BPDATransformConfig(transforms="resample", measure="likelihood")
    det.fit(clips(4, 0))
    config = BPDATransformConfig.from_detector(det, **SHORT)
    assert (config.measure, config.reduce, config.score_limit) == ("likelihood", "mean", det.threshold_)
    # a clip whose copies all say what it says: only the score can then refuse it
    x = next(x for x in clips(8, 5, seconds=0.6) if len(set(rec.transcribe([x] + det.copies_of(x)))) == 1)
    said = rec.transcribe([x])[0]
    score = det.score(x)
    batch = _batch(x)
    for limit, success in ((score + 1e-3, True), (score - 1e-3, False)):
        attack = BPDATransformAttack(rec, dataclasses.replace(config, score_limit=limit))
        assert attack.detector_score(x) == pytest.approx(score)  # the known seed: the detector's own score
        assert attack.is_success(batch, [said], 0).tolist() == [success]
        assert attack.config_hash != BPDATransformAttack(rec, dataclasses.replace(config, measure="transcript",
                                                                                  score_limit=None)).config_hash
    assert attack.extra_measures(x, x, said)["transform_score"] == pytest.approx(score)


def test_bpda_attack_lowers_its_objective_within_the_bound(rec):
    attack = BPDATransformAttack(rec, BPDATransformConfig(transforms="mel,resample,quantize",
                                                          griffin_lim_iterations=4, **SHORT))
    result = _descends(attack, speechlike(0.5, seed=5))
    assert set(result.extra) >= {"transcript_mel", "transcript_resample", "transcript_quantize",
                                 "success_all_transforms"}


def test_torch_statistics_equal_the_distribution_detectors_features(rec):
    det = DistributionDetector(rec)
    x = speechlike(0.4, seed=6)
    with torch.no_grad():  # as the detector runs the model (with gradients on, float32 rounds differently)
        log_probs, lengths = rec.log_probs(_batch(x))
    ours = utterance_features_torch(log_probs[0, : int(lengths[0])])
    assert np.allclose(ours.numpy(), det.features(x), rtol=1e-12, atol=1e-12)
    # an even number of classes and of steps (the medians average two values), one step, and -inf entries
    rng = np.random.default_rng(0)
    for shape in ((6, 4), (1, 5), (7, 3)):
        rows = rng.normal(size=shape) * 5
        rows[0, 0] = -np.inf
        assert np.allclose(utterance_features_torch(torch.from_numpy(rows)).numpy(), utterance_features(rows),
                           rtol=1e-9, atol=1e-12)
    waveform = torch.from_numpy(x).requires_grad_(True)  # and gradients reach the samples
    lp, n = rec.log_probs(AudioBatch(waveform[None], torch.tensor([len(x)]), 16000))
    (grad,) = torch.autograd.grad(utterance_features_torch(lp[0, : int(n[0])]).sum(), waveform)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_stats_penalty_reads_a_fitted_detector_and_lowers_its_objective(rec, tmp_path):
    det = DistributionDetector(rec, target_fpr=0.2).fit(clips(4, 0))  # benign only: the one-class Gaussian
    config = StatsPenaltyConfig.from_detector(det, gamma=0.05, **SHORT)
    assert np.allclose(config.reference, det.mean_) and np.allclose(config.scale, det.scale_)
    _descends(StatsPenaltyAttack(rec, config), speechlike(0.5, seed=7))
    # through the factory, as `asrguard attack --set detector=FOLDER` builds it
    built = make_attack("stats-penalty", rec, {"detector": str(det.save(tmp_path / "dist")), "gamma": "0.05"})
    assert built.detector is not None and np.allclose(built.config.reference, det.mean_)
    with pytest.raises(ConfigError, match="reference"):
        StatsPenaltyAttack(rec, StatsPenaltyConfig(gamma=0.1))
    with pytest.raises(ConfigError, match="24 values"):
        StatsPenaltyConfig(reference="1,2,3")


def test_on_a_steerable_toy_the_penalty_keeps_the_statistics_nearer_benign_than_cw():
    rec, x = ToyRecognizer(gain=6.0), speechlike(0.4, seed=3)
    benign = [speechlike(0.4, seed=s) for s in range(10, 18)]
    det = DistributionDetector(rec, model="gaussian", target_fpr=0.2).fit(benign)
    common = dict(tau_db=10.0, max_iter=300, check_every=5, learning_rate=0.2)
    plain = CWAttack(rec, CWConfig(**common)).generate([x], ["ab"])[0]
    attack = StatsPenaltyAttack(rec, StatsPenaltyConfig.from_detector(det, gamma=0.1, **common), detector=det)
    result = attack.generate([x], ["ab"])[0]
    assert plain.success  # the penalised attack trades the target off against the statistics
    assert result.extra["distribution_score"] < det.score(plain.waveform) / 5
    assert result.extra["statistics_distance"] < float(attack.statistics_distance(_batch(plain.waveform))[0]) / 5


def test_stats_penalty_success_also_asks_the_detector():
    toy = ToyRecognizer()
    x = speechlike(0.5, seed=8)
    said = toy.transcribe([x])[0]
    assert said  # the toy says something, so "reaching the target" is already true at x
    det = DistributionDetector(toy, target_fpr=0.2).fit(clips(4, 0))
    attack = StatsPenaltyAttack(toy, StatsPenaltyConfig(gamma=0.0), detector=det)
    det.threshold_ = np.inf
    assert attack.is_success(_batch(x), [said], 0).tolist() == [True]
    det.threshold_ = -np.inf  # the detector flags everything: the target alone no longer counts
    assert attack.is_success(_batch(x), [said], 0).tolist() == [False]
    assert StatsPenaltyAttack(toy, StatsPenaltyConfig(gamma=0.0)).is_success(_batch(x), [said], 0).tolist() == [True]


def test_the_factory_builds_each_by_name(rec):
    assert {"eot-dropout", "bpda-transform", "stats-penalty"} <= set(ATTACKS)
    eot = make_attack("eot-dropout", rec, {"gamma": "0.5", "masks_per_step": "3", "p": "0.2"})
    assert isinstance(eot, EOTDropoutAttack) and (eot.config.gamma, eot.config.masks_per_step) == (0.5, 3)
    bpda_attack = make_attack("bpda-transform", rec, {"transforms": "mel, quantize", "fresh_seeds": "true"})
    assert bpda_attack.names == ["mel", "quantize"] and bpda_attack.config.fresh_seeds
    stats = make_attack("stats-penalty", rec, {"reference": ",".join(["0.5"] * 24)})
    assert stats.config.reference == (0.5,) * 24 and stats.detector is None


@pytest.fixture(scope="module")
def combined(rec):
    from asrguard.detect.combined import CombinedDetector
    return CombinedDetector(rec, n=4, p=0.3, target_fpr=0.2).fit(clips(4, 0), clips(4, 1, noisy=True))


def test_combined_evasion_lowers_its_objective_within_the_bound(rec, combined):
    from asrguard.attacks.combined_evasion import CombinedEvasionAttack, CombinedEvasionConfig
    attack = CombinedEvasionAttack(rec, CombinedEvasionConfig(masks_per_step=2, **SHORT), detector=combined)
    result = _descends(attack, speechlike(0.5, seed=9))
    assert result.extra["combined_flagged"] == (result.extra["combined_score"] > combined.threshold_)
    # every kind of evidence is in the objective: dropping one changes its value
    x = _batch(speechlike(0.5, seed=9))
    with torch.no_grad():
        full = float(attack.objective(x, [TARGET], 0)[0])
        for weight in ("beta_dropout", "gamma", "beta", "beta_noise"):
            other = CombinedEvasionAttack(rec, CombinedEvasionConfig(masks_per_step=2, **{**SHORT, weight: 0.0}),
                                          detector=combined)
            assert float(other.objective(x, [TARGET], 0)[0]) < full


def test_combined_evasion_checks_with_its_own_seed_and_asks_the_detector(rec, combined, tmp_path):
    from asrguard.attacks.combined_evasion import CombinedEvasionAttack, CombinedEvasionConfig
    attack = CombinedEvasionAttack(rec, CombinedEvasionConfig(**SHORT), detector=combined)
    assert attack.detector.seed != combined.seed and attack.detector is not combined
    assert attack.detector.threshold_ == combined.threshold_ and combined.seed == 0  # the detector is untouched
    with torch.no_grad():  # the objective reseeds its transforms every step: its own, not the detector's
        attack.objective(_batch(speechlike(0.5, seed=8)), [TARGET], 3)
    assert all(m.seed == 0 for m in combined.members.values())
    x = speechlike(0.5, seed=8)
    said = rec.transcribe([x])[0]
    attack.detector.threshold_ = np.inf
    assert attack.is_success(_batch(x), [said], 0).tolist() == [True]
    attack.detector.threshold_ = -np.inf  # the detector flags everything: the target alone no longer counts
    assert attack.is_success(_batch(x), [said], 0).tolist() == [False]
    # with a margin, scoring just under the threshold is not enough
    score = attack.detector.score(x)
    attack.detector.threshold_ = score + 0.5
    assert attack.is_success(_batch(x), [said], 0).tolist() == [True]
    wary = CombinedEvasionAttack(rec, CombinedEvasionConfig(**SHORT, score_margin=1.0), detector=combined)
    wary.detector.threshold_ = score + 0.5
    assert wary.detector.score(x) == score and wary.is_success(_batch(x), [said], 0).tolist() == [False]
    with pytest.raises(ConfigError, match="score_margin"):
        CombinedEvasionConfig(score_margin=-0.1)
    # a detector in memory joins the config (and so the folder's hash); a saved one by its folder
    other = type(combined)(rec, n=4, p=0.3, C=1.0, target_fpr=0.2).fit(clips(4, 0), clips(4, 1, noisy=True))
    assert CombinedEvasionAttack(rec, detector=other).config_hash != CombinedEvasionAttack(rec, detector=combined).config_hash
    built = make_attack("combined-evasion", rec, {"detector": str(combined.save(tmp_path / "combined"))})
    assert built.detector.fingerprint() != combined.fingerprint()  # another seed ...
    assert built.detector.copy_with_seed(0).fingerprint() == combined.fingerprint()  # ... of the same detector
    with pytest.raises(ConfigError, match="needs a fitted combined detector"):
        make_attack("combined-evasion", rec)
    with pytest.raises(ConfigError, match="masks_per_step"):
        CombinedEvasionConfig(masks_per_step=1)
