"""ART adapters both ways: asrguard recogniser -> ART estimator -> ART attacks, and ART estimator -> asrguard."""

import numpy as np
import pytest
import torch

pytest.importorskip("art", reason="ART adapters need the optional extra: pip install adversarial-robustness-toolbox==1.20.1")

from art.attacks.evasion import CarliniWagnerASR, ImperceptibleASR  # noqa: E402
from art.attacks.evasion.imperceptible_asr.imperceptible_asr import PsychoacousticMasker  # noqa: E402
from art.estimators.speech_recognition.speech_recognizer import SpeechRecognizerMixin  # noqa: E402

from asrguard.asr.art import ARTRecognizer, to_art_estimator  # noqa: E402
from asrguard.asr.base import AudioBatch, missing_capabilities  # noqa: E402
from asrguard.attacks.cw import CWAttack, CWConfig  # noqa: E402
from asrguard.errors import ConfigError, MissingCapabilityError  # noqa: E402
from attack_helpers import ToyRecognizer, speechlike  # noqa: E402

WAVES = [speechlike(0.3, 0), speechlike(0.5, 1)]
TARGETS = ["ab", "go"]


def ragged(waves):
    x = np.empty(len(waves), dtype=object)
    x[:] = [w.copy() for w in waves]
    return x


@pytest.fixture
def estimator():
    return to_art_estimator(ToyRecognizer(gain=5.0))


def test_estimator_predicts_and_gives_per_utterance_gradients(estimator):
    assert isinstance(estimator, SpeechRecognizerMixin)
    assert estimator.sample_rate == 16000 and estimator.input_shape == (None,)
    recognizer = estimator.recognizer
    predictions = estimator.predict(ragged(WAVES))
    assert list(predictions) == [t.upper() for t in recognizer.transcribe(WAVES)]
    grads = estimator.loss_gradient(ragged(WAVES), np.array(["AB", "GO"]))
    assert grads.dtype == object and [g.shape for g in grads] == [w.shape for w in WAVES]
    # each utterance's gradient is that of its own loss, whatever it is batched with
    batch = AudioBatch.from_waveforms(WAVES[:1], 16000)
    x = batch.waveforms.clone().requires_grad_(True)
    recognizer.loss(batch.with_waveforms(x), ["ab"]).sum().backward()
    assert np.allclose(grads[0], x.grad[0].numpy(), atol=1e-6)
    losses = estimator.compute_loss(ragged(WAVES), np.array(["AB", "GO"]))
    assert losses.shape == (2,) and np.isfinite(losses).all()
    assert np.isclose(estimator.compute_loss(ragged(WAVES), np.array(["AB", "GO"]), reduction="sum"), losses.sum())
    # equal lengths may come as a 2-D float array; gradients keep that layout
    square = np.stack([WAVES[0], WAVES[0]])
    assert estimator.loss_gradient(square, np.array(["AB", "AB"])).shape == square.shape


def test_hooks_see_predictions_and_can_stop_an_attack():
    seen = []

    class Stop(Exception):
        pass

    def stop(x, y):
        raise Stop

    estimator = to_art_estimator(ToyRecognizer(), on_predict=lambda x, t: seen.append(t), on_loss_gradient=stop)
    estimator.predict(ragged(WAVES))
    assert seen == [ToyRecognizer().transcribe(WAVES)]
    with pytest.raises(Stop):
        CarliniWagnerASR(estimator, max_iter=2).generate(ragged(WAVES), np.array(["AB", "GO"]))


def test_a_recognizer_without_a_loss_is_refused():
    class TranscribeOnly:
        sample_rate = 16000

        def transcribe(self, batch):
            return ["x"]

        def fingerprint(self):
            return None

        def normalize_text(self, text):
            return text

    with pytest.raises(MissingCapabilityError, match="loss"):
        to_art_estimator(TranscribeOnly())


@pytest.mark.parametrize("attack", ["cw", "imperceptible"])
def test_art_attacks_run_on_an_asrguard_recognizer(estimator, attack):
    x = ragged(WAVES)
    if attack == "cw":
        art_attack = CarliniWagnerASR(estimator, eps=0.05, learning_rate=0.005, max_iter=10, num_iter_decrease_eps=5,
                                      batch_size=2)
    else:
        pytest.importorskip("librosa", reason="ART's psychoacoustic masker needs librosa")
        # a PyTorchEstimator, so ART's PyTorch masking-threshold stage accepts it
        art_attack = ImperceptibleASR(estimator, PsychoacousticMasker(), eps=0.05, learning_rate_1=0.005,
                                      max_iter_1=5, max_iter_2=5, num_iter_decrease_eps=5, learning_rate_2=1e-4,
                                      num_iter_increase_alpha=5, num_iter_decrease_alpha=5, batch_size=2)
    adversarial = art_attack.generate(x, np.array(["AB", "GO"]))
    assert len(adversarial) == 2
    for original, adv in zip(WAVES, adversarial):
        adv = np.asarray(adv, dtype=np.float64)
        assert adv.shape == original.shape and np.isfinite(adv).all()
        assert 0 < np.abs(adv - original).max() <= 0.05 + 1e-6
    assert all(np.array_equal(w, o) for w, o in zip(x, WAVES))  # ART left the input alone


def test_art_recognizer_has_transcribe_and_loss_only(estimator):
    recognizer = ARTRecognizer(estimator)
    assert recognizer.sample_rate == 16000
    assert missing_capabilities(recognizer, "transcribe", "loss") == []
    assert missing_capabilities(recognizer, "posteriors", "stochastic") == ["posteriors", "stochastic"]
    toy = estimator.recognizer
    assert [recognizer.normalize_text(t) for t in recognizer.transcribe(WAVES)] == toy.transcribe(WAVES)
    assert recognizer.fingerprint() is None
    with pytest.raises(ConfigError):
        recognizer.loss(AudioBatch.from_waveforms(WAVES, 16000), ["ab", " "])


@pytest.mark.parametrize("scale", [1.0, 32768.0])
def test_art_recognizer_loss_gradient_is_the_estimators(scale):
    toy = ToyRecognizer(gain=5.0)
    estimator = to_art_estimator(toy)
    if scale != 1.0:  # an int16-scale estimator: it divides its input back down
        inner = estimator
        estimator = to_art_estimator(toy)
        estimator.predict = lambda x, **k: inner.predict(ragged([w / scale for w in x]), **k)
        estimator.loss_gradient = lambda x, y, **k: inner.loss_gradient(ragged([w / scale for w in x]), y) / scale
        estimator.compute_loss = lambda x, y, **k: inner.compute_loss(ragged([w / scale for w in x]), y, **k)
    recognizer = ARTRecognizer(estimator, input_scale=scale)
    batch = AudioBatch.from_waveforms(WAVES, 16000)
    x = batch.waveforms.clone().requires_grad_(True)
    loss = recognizer.loss(batch.with_waveforms(x), TARGETS)
    direct = toy.loss(batch, TARGETS).detach()
    assert torch.allclose(loss.detach(), direct, rtol=1e-4)
    (2.0 * loss[0] + 3.0 * loss[1]).backward()  # the chain rule uses grad_output per utterance
    expected = estimator.loss_gradient(ragged([w * scale for w in WAVES]), np.array(["AB", "GO"]))
    n0, n1 = len(WAVES[0]), len(WAVES[1])
    assert np.allclose(x.grad[0, :n0].numpy(), 2.0 * scale * expected[0], rtol=1e-4, atol=1e-6)
    assert np.allclose(x.grad[1, :n1].numpy(), 3.0 * scale * expected[1], rtol=1e-4, atol=1e-6)
    assert x.grad[0, :n0].abs().sum() > 0 and torch.all(x.grad[0, n0:] == 0)


def test_loss_values_are_nan_when_the_estimator_cannot_compute_them(estimator):
    def no_loss(x, y, **kwargs):
        raise NotImplementedError

    estimator.compute_loss = no_loss
    recognizer = ARTRecognizer(estimator)
    batch = AudioBatch.from_waveforms(WAVES, 16000)
    x = batch.waveforms.clone().requires_grad_(True)
    loss = recognizer.loss(batch.with_waveforms(x), TARGETS)
    assert torch.isnan(loss).all()
    loss.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_asrguard_cw_attack_runs_through_an_art_estimator(estimator):
    recognizer = ARTRecognizer(estimator)
    config = CWConfig(tau_db=10, max_iter=30, check_every=5, max_shrinks=2)
    results = CWAttack(recognizer, config).generate(WAVES, TARGETS)
    direct = CWAttack(estimator.recognizer, CWConfig(tau_db=10, max_iter=30, check_every=5, max_shrinks=2,
                                                     margin_weight=0.0)).generate(WAVES, TARGETS)
    for x, r, d in zip(WAVES, results, direct):
        assert r.waveform.shape == x.shape and np.isfinite(r.waveform).all()
        assert r.iterations > 0 and not np.array_equal(r.waveform, x)
        assert r.db_x_delta <= -10 + 1e-6
        assert r.transcript_dropout == ""  # no inference-time randomness to draw from
        # the same optimisation as CW on the recogniser itself (CTC only, no margin)
        assert r.iterations == d.iterations and r.success == d.success
        assert np.allclose(r.waveform, d.waveform, atol=1e-5)
