"""Where and how much dropout to inject into Whisper: benign WER and transcript diversity.

Whisper was trained without dropout, so the detector's randomness is injected at inference
(:meth:`WhisperRecognizer.stochastic`). A useful setting keeps benign speech recognisable
(the realisations' WER stays near the deterministic one) while still drawing several
distinct transcripts, so that an adversarial input's fragility has room to show. For each
``(sites, p)`` this measures on benign ``english_speech`` utterances of 2-8 s:

* ``realization_wer``: WER of all realisations against the references (normalised);
* ``distinct_fraction``: distinct normalised transcripts per utterance over ``n``, averaged;
* ``agree_with_deterministic``: share of realisations equal to the deterministic transcript;
* ``seconds_per_utterance``: the cost of the ``n`` realisations.

Results are written atomically, one row per setting, and a rerun skips rows already there.

    python -m asrguard.experiments.whisper_dropout --out docs/results/whisper/dropout.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jiwer
import numpy as np

from ..asr import recipes
from ..asr.registry import load_recognizer
from ..fileio import atomic_write_text
from ..text import normalize_english

SITES = ("decoder", "encoder", "both")
RATES = (0.05, 0.1, 0.2)
NATIVE = ("librispeech-test-other", "librispeech-test-clean", "common-voice", "librivox", "ljspeech")


def utterances(n: int, seed: int, data_root=None) -> list:
    """``n`` native-speech utterances of 2-8 s, seeded, spread over the native subsets."""
    root = Path(data_root) if data_root else recipes.default_data_root()
    records = [r for r in recipes.english_speech_records(root, min_seconds=2.0, max_seconds=8.0) if r.source in NATIVE]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(records), min(n, len(records)), replace=False))
    return recipes.load_records([records[i] for i in chosen])


def measure(recognizer, items, p: float, n: int, seed: int) -> dict:
    references, hypotheses, distinct, agree = [], [], [], []
    started = time.perf_counter()
    for item in items:
        clean = normalize_english(recognizer.transcribe([item.waveform])[0])
        drawn = [normalize_english(t) for t in recognizer.realizations(item.waveform, n, seed=seed, p=p).transcripts]
        references += [normalize_english(item.transcript)] * n
        hypotheses += drawn
        distinct.append(len(set(drawn)) / n)
        agree.append(np.mean([t == clean for t in drawn]))
    return {"realization_wer": float(jiwer.wer(references, hypotheses)), "distinct_fraction": float(np.mean(distinct)),
            "agree_with_deterministic": float(np.mean(agree)),
            "seconds_per_utterance": (time.perf_counter() - started) / len(items)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file (resumes: finished rows are kept)")
    parser.add_argument("--n-utterances", type=int, default=12)
    parser.add_argument("--n", type=int, default=10, help="realisations per utterance")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sites", default=",".join(SITES))
    parser.add_argument("--rates", default=",".join(map(str, RATES)))
    parser.add_argument("--data-root", type=Path, default=None)
    args = parser.parse_args(argv)
    items = utterances(args.n_utterances, args.seed, args.data_root)
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    result.setdefault("rows", {})
    result["settings"] = {"n_utterances": len(items), "n": args.n, "seed": args.seed, "window": "30s",
                          "ids": [i.id for i in items]}
    base = load_recognizer("whisper:tiny.en")
    if "deterministic_wer" not in result:
        hyps = [normalize_english(base.transcribe([i.waveform])[0]) for i in items]
        result["deterministic_wer"] = float(jiwer.wer([normalize_english(i.transcript) for i in items], hyps))
    for sites in args.sites.split(","):
        recognizer = load_recognizer(f"whisper:tiny.en?dropout_sites={sites}")
        for p in (float(r) for r in args.rates.split(",")):
            key = f"{sites}@{p:g}"
            if key in result["rows"]:
                continue
            result["rows"][key] = {"sites": sites, "p": p, **measure(recognizer, items, p, args.n, args.seed)}
            atomic_write_text(args.out, json.dumps(result, indent=1))
            print(key, json.dumps(result["rows"][key]), file=sys.stderr, flush=True)
    atomic_write_text(args.out, json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
