"""Whisper tiny.en on one 5 s utterance: transcription (30 s window vs own length), one attack
step, I = 50 dropout realisations, and CTranslate2 on the same weights when it is installed.

Every time is the median of repeated runs in this one process; speed is stated as ratios:

* ``rtf_30s`` / ``rtf_own``: transcription seconds over audio seconds (target: 0.2 or better);
* ``ratio_30s_over_own``: what the own-length encoder saves end to end (it also decodes longer when
  it repeats itself); ``ratio_encoder_30s_over_own``: the encoder alone;
* ``attack_step_s``: one forward and backward pass of the teacher-forced loss (30 s window);
* ``ratio_realizations_over_transcribe``: I = 50 realisations at the default sites over one transcription;
* ``ratio_ours_over_ctranslate2``: our transcription over CTranslate2's greedy decoding of the
  same weights in float32 on the same features (``pip install -e ".[benchmark]"``).

The utterance is a real one from ``../shared/data/english_speech`` (the first LibriSpeech
test-other clip of 4.5-5.5 s); without the data, a synthetic 5 s signal is used and said so.

    python benchmarks/whisper.py --json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from _timing import median_seconds, print_result

from asrguard.asr.base import AudioBatch
from asrguard.asr.recipes import default_data_root
from asrguard.asr.whisper import WhisperRecognizer
from asrguard.asr.whisper.convert import bundled_source
from asrguard.audio import load_audio


def five_second_utterance() -> tuple[np.ndarray, str]:
    root = default_data_root() / "english_speech"
    manifest = root / "manifest.jsonl"
    if manifest.is_file():
        for line in manifest.read_text().splitlines():
            row = json.loads(line)
            if row["id"].startswith("librispeech_test_other") and 4.5 <= row["duration_s"] <= 5.5:
                return load_audio(root / row["path"], 16000)[0], row["id"]
    t = np.arange(5 * 16000) / 16000
    return (0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32), "synthetic"


def ctranslate2_seconds(rec: WhisperRecognizer, waveform: np.ndarray, repeats: int) -> dict:
    try:
        import ctranslate2
    except ImportError:
        return {"ctranslate2": "not installed (pip install ctranslate2)"}
    model = ctranslate2.models.Whisper(str(bundled_source()), device="cpu", compute_type="float32",
                                       intra_threads=torch.get_num_threads())
    features = rec._features_by_group(AudioBatch.from_waveforms([waveform], 16000))[0][1].numpy()
    storage = ctranslate2.StorageView.from_array(np.ascontiguousarray(features))

    def run():
        return model.generate(storage, [rec.prompt], beam_size=1, max_length=rec._token_budget(len(waveform)))

    result = run()[0]
    return {"ctranslate2_s": median_seconds(run, repeats), "ctranslate2_version": ctranslate2.__version__,
            "ctranslate2_transcript": rec._text(result.sequences_ids[0])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--realization-repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=50, help="realisations I")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    waveform, source = five_second_utterance()
    seconds = len(waveform) / 16000
    batch = AudioBatch.from_waveforms([waveform], 16000)
    own = WhisperRecognizer.load("tiny.en", window="own")
    full = WhisperRecognizer.load("tiny.en", window="30s")

    def encoder_seconds(rec):
        with torch.no_grad():
            (_, features), = rec._features_by_group(batch)
            return median_seconds(lambda: rec._encode(features), args.repeats)

    encode_30s, encode_own = encoder_seconds(full), encoder_seconds(own)
    transcribe_30s = median_seconds(lambda: full.transcribe(batch), args.repeats)
    transcribe_own = median_seconds(lambda: own.transcribe(batch), args.repeats)
    target = "okay google unlock phone and delete files"

    def attack_step():
        delta = torch.zeros_like(batch.waveforms, requires_grad=True)
        full.loss(batch.with_waveforms(batch.waveforms + delta), [target]).sum().backward()

    step = median_seconds(attack_step, args.repeats)
    realizations = median_seconds(lambda: full.realizations(waveform, args.n, seed=0), args.realization_repeats)
    drawn = full.realizations(waveform, args.n, seed=0)
    result = {
        "utterance": source, "audio_s": seconds, "threads": args.threads,
        "transcript_30s": full.transcribe(batch)[0], "transcript_own": own.transcribe(batch)[0],
        "transcribe_30s_s": transcribe_30s, "transcribe_own_s": transcribe_own,
        "rtf_30s": transcribe_30s / seconds, "rtf_own": transcribe_own / seconds,
        "ratio_30s_over_own": transcribe_30s / transcribe_own,
        "encode_30s_s": encode_30s, "encode_own_s": encode_own, "ratio_encoder_30s_over_own": encode_30s / encode_own,
        "attack_step_s": step, "ratio_attack_step_over_transcribe": step / transcribe_30s,
        "n_realizations": args.n, "p": full.default_p, "dropout_sites": full.dropout_sites,
        "realizations_s": realizations, "ratio_realizations_over_transcribe": realizations / transcribe_30s,
        "distinct_realization_transcripts": len(set(drawn.transcripts)),
    }
    ct2 = ctranslate2_seconds(full, waveform, args.repeats)
    result.update(ct2)
    if "ctranslate2_s" in ct2:
        result["ratio_ours_over_ctranslate2"] = transcribe_30s / ct2["ctranslate2_s"]
    print_result(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
