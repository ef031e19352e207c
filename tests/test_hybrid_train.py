"""End-to-end training of the hybrid recogniser on synthetic tone "digits" (no corpus needed)."""

import numpy as np
import pytest
import torch

from asrguard.asr.base import AudioBatch
from asrguard.asr.hybrid.digits import augment, digit_records
from asrguard.asr.hybrid.recognizer import HybridRecognizer
from asrguard.asr.hybrid.train import TrainConfig, train_recognizer, word_accuracy, word_errors
from asrguard.data import Utterance
from asrguard.experiments.daubener2020 import evaluate_audio

TONES = {"one": 400.0, "two": 1000.0, "three": 2200.0}
RATE = 16000



def _tone_utterances(n, seed):
    """Each word is a 0.3-0.45 s tone of its own pitch; pauses are faint noise. Boundaries are exact."""
    rng = np.random.default_rng(seed)
    waves, texts, words = [], [], []
    for _ in range(n):
        k = int(rng.integers(1, 4))
        chosen = [str(w) for w in rng.choice(list(TONES), size=k)]
        pieces, spans, t = [rng.normal(0, 0.003, int(RATE * rng.uniform(0.15, 0.25)))], [], 0
        t = len(pieces[0])
        for w in chosen:
            n_samples = int(RATE * rng.uniform(0.3, 0.45))
            time = np.arange(n_samples) / RATE
            tone = 0.5 * np.sin(2 * np.pi * TONES[w] * time) * np.hanning(n_samples) ** 0.3
            pieces.append(tone + rng.normal(0, 0.003, n_samples))
            spans.append({"word": w, "start": t / RATE, "end": (t + n_samples) / RATE})
            t += n_samples
            gap = rng.normal(0, 0.003, int(RATE * rng.uniform(0.1, 0.2)))
            pieces.append(gap)
            t += len(gap)
        waves.append(np.clip(np.concatenate(pieces), -1, 1).astype(np.float32))
        texts.append(" ".join(chosen))
        words.append(spans)
    return [Utterance.from_waveform(f"u{i}", w, RATE, t, "synthetic", words=s)
            for i, (w, t, s) in enumerate(zip(waves, texts, words))]


def _waves(utts):
    return [u.waveform for u in utts]


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    train = _tone_utterances(40, seed=0)
    config = TrainConfig(epochs_ce=2, epochs_realign=2, lr=3e-3, batch_frames=128, seed=0)
    return train_recognizer("fnn", train, config)


def test_trained_recogniser_decodes_and_aligns_tones(trained, tmp_path):
    test = _tone_utterances(10, seed=1)
    hyps = trained.transcribe(AudioBatch.from_waveforms(_waves(test), RATE))
    assert word_accuracy([u.transcript for u in test], hyps) >= 0.9
    # forced alignment with the trained model finds the true word boundaries within 2 frames
    hop = trained.frontend["hop_length"] / RATE
    paths = trained.align(AudioBatch.from_waveforms(_waves(test), RATE), [u.transcript for u in test])
    for path, spans in zip(paths, [u.words for u in test]):
        found = [(w, s, e) for w, s, e in trained.hmm.segments(path) if w != "sil"]
        assert [w for w, _, _ in found] == [s["word"] for s in spans]
        for (_, s, e), span in zip(found, spans):
            assert abs(s - span["start"] / hop) <= 2 and abs(e - span["end"] / hop) <= 2
    # estimated transitions are proper distributions; vocabulary is what was trained
    np.testing.assert_allclose(trained.hmm.transition_matrix().sum(1), 1.0, atol=1e-9)
    assert set(trained.hmm.vocabulary) == set(TONES)
    trained.save(tmp_path / "tones")
    again = HybridRecognizer.load(tmp_path / "tones")
    assert again.transcribe(AudioBatch.from_waveforms(_waves(test[:3]), RATE)) == hyps[:3]


def test_evaluate_audio_scores_every_measure(trained):
    test = _tone_utterances(3, seed=2)
    out = evaluate_audio(trained, _waves(test), 1, seed=0)
    assert len(out["transcripts"]) == 3 and set(out["scores"]) == {"entropy"}
    assert all(0 <= v <= np.log(95) for v in out["scores"]["entropy"])


def test_augment_keeps_boundaries_consistent():
    utts = _tone_utterances(4, seed=3)
    aug = augment(utts, seed=0, p_speed=1.0, p_noise=1.0)
    for u, v in zip(utts, aug):
        x, y, a, b = u.waveform, v.waveform, u.words, v.words
        factor = len(x) / len(y)
        assert b[-1]["end"] == pytest.approx(a[-1]["end"] / factor)
        assert np.abs(y).max() <= 1.0


def test_word_errors():
    assert word_errors("one two three", "one three") == 1
    assert word_errors("one", "") == 1 and word_errors("", "two") == 1
    assert word_accuracy(["one two"], ["one two"]) == 1.0


def test_held_out_speakers_match_the_project_split(shared_data):
    records = digit_records(shared_data)
    fsdd_test = {r.speaker for r in records if r.source == "fsdd" and r.split == "test"}
    assert fsdd_test == {"theo"}
    sc = [r for r in records if r.source == "speech_commands"]
    if sc:
        train_speakers = {r.speaker for r in sc if r.split == "train"}
        test_speakers = {r.speaker for r in sc if r.split == "test"}
        assert train_speakers and test_speakers and not train_speakers & test_speakers


def test_matrix_gaussian_bnn_trains_on_tones():
    train = _tone_utterances(40, seed=0)
    config = TrainConfig(epochs_ce=2, epochs_realign=2, lr=3e-3, batch_frames=128, seed=0)
    rec = train_recognizer("bnn", train, config, model_kwargs={"posterior": "matrix_gaussian"})
    assert rec.acoustic.posterior == "matrix_gaussian" and rec.acoustic.n_train > 1000
    test = _tone_utterances(10, seed=1)
    hyps = rec.transcribe(AudioBatch.from_waveforms(_waves(test), RATE))
    assert word_accuracy([u.transcript for u in test], hyps) >= 0.9
    # its draws differ from one another (the posterior kept some spread), its mean prediction decodes
    draws, _ = rec.draws(AudioBatch.from_waveforms(_waves(test[:2]), RATE), 3, seed=0)
    assert not torch.equal(draws[0], draws[1])
