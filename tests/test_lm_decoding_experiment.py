"""Counting what the LM decoder makes of an attack run's examples, on a tiny model and a made-up run."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from asrguard.asr.base import AudioBatch
from asrguard.asr.ctc import CTCConfig, CTCRecognizer
from asrguard.errors import DataError
from asrguard.experiments.lm_decoding import decode_attack_run


def test_counts_targets_and_originals_under_both_decoders(tmp_path):
    torch.manual_seed(0)
    rec = CTCRecognizer(CTCConfig(dense_size=32, lstm_size=16))
    t = np.arange(8000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 300 * t) + 0.05 * np.random.default_rng(0).normal(size=t.size)).astype(np.float32)
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", audio, 16000, subtype="FLOAT")
    greedy = rec.transcribe(AudioBatch.from_waveforms([audio], 16000))[0]
    rows = [{"id": "a", "audio": "audio/a.wav", "target": greedy, "reference": "zzz", "success": True},
            {"id": "b", "audio": None, "target": "go", "reference": "no", "success": False}]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    same = decode_attack_run(rec, tmp_path, rec.decode)  # an "LM" decoder that is greedy decoding itself
    assert (same["n_successful"], same["greedy_equals_target"], same["lm_equals_target"]) == (1, 1, 1)
    assert same["lm_equals_reference"] == 0 and same["most_common_lm_changes"] == []

    def say_zzz(log_probs, lengths):
        return ["zzz"] * log_probs.shape[0]

    other = decode_attack_run(rec, tmp_path, say_zzz)
    assert (other["lm_equals_target"], other["lm_equals_reference"], other["lm_success_rate"]) == (0, 1, 0.0)
    assert other["most_common_lm_changes"] == [(f"{greedy} -> zzz", 1)]


def test_refuses_a_folder_without_a_manifest(tmp_path):
    with pytest.raises(DataError, match="manifest"):
        decode_attack_run(None, tmp_path, None)


def test_lm_decoding_recognizer_changes_only_the_transcript():
    from asrguard.experiments.lm_decoding import LMDecodingRecognizer

    torch.manual_seed(1)
    base = CTCRecognizer(CTCConfig(dense_size=32, lstm_size=16))
    wrapped = LMDecodingRecognizer(base, lambda log_probs, lengths: ["okay"] * log_probs.shape[0])
    batch = AudioBatch.from_waveforms([np.zeros(4000, dtype=np.float32) + 0.01], 16000)
    assert wrapped.transcribe(batch) == ["okay"] and wrapped.sample_rate == base.sample_rate
    assert torch.equal(wrapped.log_probs(batch)[0], base.log_probs(batch)[0])
    assert torch.equal(wrapped.loss(batch, ["a"]), base.loss(batch, ["a"]))
    with wrapped.stochastic(0.5, seed=3):
        noisy = wrapped.log_probs(batch)[0]
    with base.stochastic(0.5, seed=3):
        assert torch.equal(noisy, base.log_probs(batch)[0])
