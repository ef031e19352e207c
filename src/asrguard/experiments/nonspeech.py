"""How a recogniser treats non-speech: does it stay silent on noise, and is it sure of that?

A recogniser that transcribes a siren as "o" or "up" also varies that guess from one dropout
realisation to the next, so benign noise looks uncertain and the US column of the
Jayashankar reproduction (commands hidden in UrbanSound8K clips) suffers. This reads the
held-out UrbanSound8K folds (:func:`asrguard.asr.recipes.urbansound_records`), transcribes
every clip and, for the first ``--limit`` clips, counts the distinct transcripts among I
dropout realisations.

    python -m asrguard.experiments.nonspeech --json
    python -m asrguard.experiments.nonspeech --model runs/ctc_exp_nonspeech/model --json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from ..asr import recipes
from ..asr.base import Recognizer
from ..asr.ctc import CTCRecognizer
from ..audio import load_audio
from ..errors import ConfigError


def nonspeech_report(recognizer: Recognizer, clips: Sequence[np.ndarray], *, n: int = 50, p: float = 0.1,
                     seed: int = 0, limit: int | None = 60) -> dict:
    """Empty-transcript rate over ``clips`` and mean distinct dropout transcripts over the first ``limit``.

    Example:
        >>> from asrguard.asr.ctc import CTCRecognizer
        >>> report = nonspeech_report(CTCRecognizer(), [np.zeros(8000, np.float32) + 0.01], n=3, limit=1)
        >>> sorted(report)[:3]
        ['empty_fraction', 'empty_transcripts', 'mean_distinct_dropout_transcripts']
    """
    if not clips:
        raise ConfigError("no non-speech clips to score")
    transcripts = recognizer.transcribe(list(clips))
    scored = clips if limit is None else clips[:limit]
    distinct = [len(set(recognizer.realizations(clip, n, seed=seed, p=p).transcripts)) for clip in scored]
    empty = sum(t == "" for t in transcripts)
    return {
        "n_clips": len(transcripts), "empty_transcripts": empty, "empty_fraction": empty / len(transcripts),
        "n_clips_dropout": len(distinct), "n_realizations": n, "p": p,
        "mean_distinct_dropout_transcripts": float(np.mean(distinct)),
        "most_common_transcripts": Counter(transcripts).most_common(8),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--data-root", type=Path, default=None, help="folder holding urbansound8k_subset/")
    parser.add_argument("--n", type=int, default=50, help="dropout realisations I")
    parser.add_argument("--p", type=float, default=0.1, help="dropout rate")
    parser.add_argument("--limit", type=int, default=60, help="clips drawn under dropout (all are transcribed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    recognizer = CTCRecognizer.load(args.model)
    root = args.data_root or recipes.default_data_root()
    clips = [load_audio(r.path, recognizer.sample_rate)[0] for r in recipes.urbansound_records(root, "test")]
    report = {"model": str(args.model or "shipped"),
              **nonspeech_report(recognizer, clips, n=args.n, p=args.p, seed=args.seed, limit=args.limit)}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['model']}: empty transcript for {report['empty_transcripts']}/{report['n_clips']} held-out "
              f"UrbanSound8K clips; {report['mean_distinct_dropout_transcripts']:.1f} distinct transcripts in "
              f"{args.n} dropout realisations (mean over {report['n_clips_dropout']} clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
