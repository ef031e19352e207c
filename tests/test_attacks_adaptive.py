"""The known-mask adaptive attack: CW that also drives the detector's own seeded realisations to the target."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from asrguard.asr.base import AudioBatch, Realizations
from asrguard.attacks.adaptive import KnownMaskAttack, KnownMaskConfig
from asrguard.attacks.cw import CWAttack, CWConfig
from asrguard.audio import db
from asrguard.errors import ConfigError
from asrguard.text import encode
from attack_helpers import ToyRecognizer, speechlike


class SeededToy(ToyRecognizer):
    """The toy with realisation k's mask drawn from its own seeded stream, as the CTC model does."""

    def _keep(self, n_frames: int, n: int, seed: int, p: float) -> torch.Tensor:
        return torch.stack([torch.rand(n_frames, self.frame, generator=torch.Generator().manual_seed(seed * 997 + k))
                            >= p for k in range(n)])

    def realization_log_probs(self, waveform, n, seed=0, *, p=0.1, indices=None):
        n_frames = waveform.shape[-1] // self.frame
        frames = waveform[: n_frames * self.frame].reshape(1, n_frames, self.frame)
        keep = self._keep(n_frames, n, seed, p)
        if indices is not None:
            keep = keep[list(indices)]
        return F.log_softmax((frames * keep / (1 - p)) @ self.weight + self.bias, dim=-1), n_frames

    def realization_loss(self, waveform, target, n, seed=0, *, p=0.1, indices=None):
        log_probs, frames = self.realization_log_probs(waveform, n, seed, p=p, indices=indices)
        label = torch.tensor(encode(target))
        k = log_probs.shape[0]
        return F.ctc_loss(log_probs.transpose(0, 1), label.repeat(k), torch.full((k,), frames),
                          torch.full((k,), len(label)), reduction="none", zero_infinity=True)

    def realizations(self, audio, n, seed=0, *, p=None):
        with torch.no_grad():
            lp, frames = self.realization_log_probs(torch.as_tensor(audio), n, seed, p=p)
        return Realizations(self.decode(lp, torch.full((n,), frames)), lp, frames, p, seed)


def _fraction(recognizer, x, target, seed, n=12, p=0.3):
    return np.mean([t == target for t in recognizer.realizations(x, n, seed=seed, p=p).transcripts])


def test_known_masks_are_driven_to_the_target_within_the_bound():
    rec = SeededToy(gain=6.0)
    x = speechlike(0.4, seed=3)
    target = "ab"
    common = dict(tau_db=10.0, max_iter=300, check_every=5, learning_rate=0.2)
    known = KnownMaskAttack(rec, KnownMaskConfig(mask_seed=5, n_realizations=12, p=0.3, masks_per_step=4,
                                                 **common)).generate([x], [target])[0]
    assert known.success and known.transcript == target
    assert known.extra["known_mask_target_fraction"] == 1.0 == _fraction(rec, known.waveform, target, seed=5)
    assert db(known.waveform - x) <= db(x) - 10.0 + 1e-3
    # plain CW under the same bound leaves the seeded realisations less often on the target
    plain = CWAttack(rec, CWConfig(**common)).generate([x], [target])[0]
    assert plain.success and _fraction(rec, plain.waveform, target, seed=5) < 1.0


def test_subsets_visit_every_realisation_and_the_config_validates():
    attack = KnownMaskAttack(SeededToy(), KnownMaskConfig(n_realizations=10, masks_per_step=5))
    seen = set(attack._subset(0)) | set(attack._subset(1))
    assert seen == set(range(10)) and len(attack._subset(2)) == 5
    for bad in (dict(masks_per_step=0), dict(masks_per_step=60), dict(p=0.0), dict(required_fraction=0.0)):
        with pytest.raises(ConfigError):
            KnownMaskConfig(**bad)


def test_without_exact_realisations_the_attack_averages_seeded_dropout_draws():
    # Whisper-like recognisers cannot replay the detector's masks: the loss is an expectation over
    # seeded draws of their own dropout, reproducible from the attack's seed.
    config = KnownMaskConfig(n_realizations=4, masks_per_step=2, max_iter=3, p=0.2)
    x = torch.from_numpy(speechlike(0.4))[None]
    batch = AudioBatch(x, torch.tensor([x.shape[1]]), 16000)
    first = KnownMaskAttack(ToyRecognizer(), config).objective(batch, ["ab"], step=1)
    again = KnownMaskAttack(ToyRecognizer(), config).objective(batch, ["ab"], step=1)
    other_step = KnownMaskAttack(ToyRecognizer(), config).objective(batch, ["ab"], step=2)
    deterministic = ToyRecognizer().loss(batch, ["ab"])
    assert torch.equal(first, again) and not torch.equal(first, other_step)
    assert float(first) > float(deterministic)  # the plain loss plus beta times the draws' mean


def test_a_recogniser_without_randomness_is_refused_when_the_attack_is_built():
    from asrguard.errors import MissingCapabilityError

    class Deterministic:
        sample_rate = 16000

        def __init__(self):
            self.toy = ToyRecognizer()

        def transcribe(self, batch):
            return self.toy.transcribe(batch)

        def fingerprint(self):
            return None

        def normalize_text(self, text):
            return text

        def loss(self, batch, targets):
            return self.toy.loss(batch, targets)

        def target_fits(self, batch, targets):
            return [True] * len(targets)

    with pytest.raises(MissingCapabilityError, match="known-mask attack needs a recogniser with stochastic"):
        KnownMaskAttack(Deterministic(), KnownMaskConfig())
    CWAttack(Deterministic(), CWConfig(max_iter=1))  # CW needs only transcripts and a loss


def test_ctc_realisation_log_probs_match_realizations_and_differentiate():
    from asrguard.asr.ctc import CTCConfig, CTCRecognizer, realization_keep_masks

    torch.manual_seed(0)
    rec = CTCRecognizer(CTCConfig(dense_size=16, lstm_size=8))
    x = (0.3 * np.random.default_rng(0).standard_normal(3200)).clip(-1, 1).astype(np.float32)
    drawn = rec.realizations(x, 6, seed=3, p=0.2, precision="float32")
    log_probs, frames = rec.realization_log_probs(torch.from_numpy(x), 6, 3, p=0.2, precision="float32")
    assert frames == drawn.length and torch.allclose(log_probs.detach(), drawn.log_probs, atol=1e-6)
    subset, _ = rec.realization_log_probs(torch.from_numpy(x), 6, 3, p=0.2, precision="float32", indices=[4, 1])
    assert torch.allclose(subset.detach(), drawn.log_probs[[4, 1]], atol=1e-5)
    with pytest.raises(ConfigError, match="indices"):
        rec.realization_log_probs(torch.from_numpy(x), 6, 3, p=0.2, indices=[6])
    # gradients through the masked layers are exact (double precision)
    model = rec.model.double()
    shared = torch.rand(1, 4, 16, dtype=torch.float64, requires_grad=True)
    kept, keep = realization_keep_masks(4, 3, model.dropout_widths(), 0.2, 3)
    assert torch.autograd.gradcheck(lambda s: model.rest_realizations(s, kept, keep, torch.float64), (shared,),
                                    eps=1e-6, atol=1e-5)
