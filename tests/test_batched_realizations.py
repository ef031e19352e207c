"""Batched realisation passes give each utterance exactly what it gets alone: same masks, transcripts, scores."""

import numpy as np
import pytest
import torch

from asrguard.asr.base import missing_capabilities
from asrguard.asr.ctc import CTCConfig, CTCRecognizer
from asrguard.errors import ConfigError
from asrguard.uncertainty.features import FeatureExtractor
from asrguard.uncertainty.realizations import draw_realizations_batch
from _detect_helpers import TranscribeOnly, clips, fitted_detector, tiny_recognizer

RATE = 16000


def waveforms() -> list[np.ndarray]:
    """Tones and noise of different lengths (0.1 to 1.3 s), so every batch is padded."""
    rng = np.random.default_rng(7)
    t = np.arange(int(1.3 * RATE)) / RATE
    long_tone = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    return [long_tone[: RATE // 10], (0.4 * rng.uniform(-1, 1, RATE // 2)).astype(np.float32), long_tone,
            clips(1, 3, noisy=True, seconds=0.7)[0]]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(3)
    return CTCRecognizer(CTCConfig(dense_size=32, lstm_size=16))


def assert_same(alone, batched, atol):
    assert batched.length == alone.length and batched.seed == alone.seed and batched.p == alone.p
    assert batched.log_probs.shape == alone.log_probs.shape  # padding cut off
    assert batched.transcripts == alone.transcripts
    torch.testing.assert_close(batched.log_probs, alone.log_probs, rtol=0, atol=atol)


@pytest.mark.parametrize("precision, atol", [("float32", 1e-5), ("bfloat16", 1e-2)])
def test_a_batch_of_different_lengths_equals_each_utterance_alone(tiny, precision, atol):
    audio = waveforms()
    batched = tiny.realizations_batch(audio, n=6, seed=11, p=0.3, precision=precision)
    assert len(batched) == len(audio)
    for x, b in zip(audio, batched):
        assert_same(tiny.realizations(x, 6, seed=11, p=0.3, precision=precision), b, atol)


def test_the_comparison_sees_the_masks(tiny):
    # other masks (another seed) give other posteriors: equality above means the same masks
    x = waveforms()[2]
    same_seed = tiny.realizations_batch([x], n=6, seed=11, p=0.3)[0].log_probs
    other_seed = tiny.realizations(x, 6, seed=12, p=0.3).log_probs
    assert (same_seed - other_seed).abs().max() > 1e-3


def test_order_and_company_do_not_change_an_utterances_result(tiny):
    audio = waveforms()
    forward = tiny.realizations_batch(audio, n=5, seed=2, p=0.2, precision="float32")
    backward = tiny.realizations_batch(audio[::-1], n=5, seed=2, p=0.2, precision="float32")[::-1]
    for a, b in zip(forward, backward):
        assert_same(a, b, atol=1e-5)


def test_the_differentiable_pass_draws_the_same_realisations(tiny):
    # attacks that know the mask seed differentiate through the same pass, on its gradient branch
    x = torch.tensor(waveforms()[2], requires_grad=True)
    log_probs, frames = tiny.realization_log_probs(x, 6, seed=11, p=0.3, precision="float32")
    alone = tiny.realizations(waveforms()[2], 6, seed=11, p=0.3, precision="float32")
    assert frames == alone.length
    torch.testing.assert_close(log_probs.detach(), alone.log_probs, rtol=0, atol=1e-5)
    log_probs.sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0


def test_the_shipped_model_batches_exactly_too():
    shipped = CTCRecognizer.load()
    audio = [w for w in waveforms()[1:]]
    batched = shipped.realizations_batch(audio, n=8, seed=0, p=0.1)
    for x, b in zip(audio, batched):
        assert_same(shipped.realizations(x, 8, seed=0, p=0.1), b, atol=1e-2)


def test_a_padded_batch_transcribes_each_utterance_as_alone(tiny):
    audio = waveforms()
    assert tiny.transcribe(audio) == [tiny.transcribe([x])[0] for x in audio]


class NoBatching(TranscribeOnly):
    """A recogniser without the batched capability: it offers only what the detector needs, one input at a time."""

    def stochastic(self, p=None, *, seed):
        return self.inner.stochastic(p, seed=seed)

    def realizations(self, audio, n, seed=0, *, p=None):
        return self.inner.realizations(audio, n, seed, p=p)


def test_recognisers_without_the_capability_get_the_loop(tiny):
    plain = NoBatching(tiny)
    assert missing_capabilities(plain, "batched_realizations") == ["batched_realizations"]
    assert missing_capabilities(tiny, "batched_realizations") == []
    audio = waveforms()
    looped = draw_realizations_batch(plain, audio, 4, p=0.3, seed=5)
    batched = draw_realizations_batch(tiny, audio, 4, p=0.3, seed=5)
    for a, b in zip(looped, batched):
        assert_same(a, b, atol=1e-2)


def test_features_of_a_batch_equal_features_one_by_one(tiny):
    extractor = FeatureExtractor(n=6, p=0.3, seed=4)
    audio = waveforms()
    for alone, batched in zip([extractor(tiny, x) for x in audio], extractor.batch(tiny, audio)):
        assert batched.transcripts == alone.transcripts and batched.medoid == alone.medoid
        np.testing.assert_array_equal(batched.char_hist, alone.char_hist)
        np.testing.assert_allclose(batched.prob_moments, alone.prob_moments, rtol=1e-4, atol=1e-6)
        assert batched.measures == pytest.approx(alone.measures, rel=1e-4, abs=1e-6)


def test_a_detectors_batched_verdicts_equal_its_verdicts_one_by_one(tmp_path):
    det = fitted_detector(tiny_recognizer(tmp_path))
    audio = waveforms() + clips(2, 9)
    batched = det.explain_batch(audio, names=[f"x{i}.wav" for i in range(len(audio))])
    for x, b in zip(audio, batched):
        alone = det.explain(x)
        assert b["score"] == pytest.approx(alone["score"], rel=1e-9, abs=1e-9)
        assert {k: v for k, v in b.items() if k != "score"} == {k: v for k, v in alone.items() if k != "score"}


def test_bad_batches_are_refused_clearly(tiny, tmp_path):
    with pytest.raises(ConfigError, match="at least one waveform"):
        tiny.realizations_batch([], n=4)
    with pytest.raises(ConfigError, match="2 names for 1 waveforms"):
        draw_realizations_batch(tiny, [waveforms()[0]], 4, names=["a", "b"])
    det = fitted_detector(tiny_recognizer(tmp_path))
    with pytest.raises(ConfigError, match="use explain"):
        det.explain_batch(waveforms()[0])
