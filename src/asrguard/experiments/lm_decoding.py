"""What happens to finished attacks if the recogniser decodes with the word-bigram LM instead of greedily.

The attacks craft and check their examples against greedy CTC decoding, the recogniser's
transcript. Beam search with the shipped LM (``asrguard asr-eval --decoder lm``) reads the same
posteriors differently. For every successful example of each attack run this decodes the
adversarial audio both ways and counts how often the LM transcript is still the target, how
often it returns to the original transcript, and what it says instead. The figures help decide
whether LM decoding can become the recogniser's transcript without re-crafting every attack.

    python -m asrguard.experiments.lm_decoding runs/attacks/cw runs/attacks/dr --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..asr.base import AudioBatch
from ..attacks.runner import MANIFEST
from ..audio import load_audio
from ..data import read_jsonl
from ..errors import DataError


def decode_attack_run(recognizer, run_dir: str | Path, lm_decoder: Callable) -> dict:
    """Greedy and LM transcripts of an attack run's successful examples, with counts.

    ``lm_decoder`` takes ``(log_probs, lengths)`` like :func:`asrguard.asr.lm.make_decoder`'s result.
    """
    run_dir = Path(run_dir)
    if not (run_dir / MANIFEST).is_file():
        raise DataError(f"{run_dir}: no {MANIFEST}; pass an attack run folder (asrguard attack --out DIR)")
    rows = [r for r in read_jsonl(run_dir / MANIFEST, allow_partial_tail=True) if r.get("success") and r.get("audio")]
    greedy_target = lm_target = lm_reference = 0
    instead: Counter = Counter()
    for row in rows:
        waveform, _ = load_audio(run_dir / row["audio"], recognizer.sample_rate)
        with torch.no_grad():
            log_probs, lengths = recognizer.log_probs(AudioBatch.from_waveforms([waveform], recognizer.sample_rate))
        greedy, lm = recognizer.decode(log_probs, lengths)[0], lm_decoder(log_probs, lengths)[0]
        greedy_target += greedy == row["target"]
        lm_target += lm == row["target"]
        lm_reference += lm == row.get("reference")
        if lm != row["target"]:
            instead[f"{row['target']} -> {lm}"] += 1
    n = len(rows)
    return {"run": str(run_dir), "n_successful": n, "greedy_equals_target": greedy_target,
            "lm_equals_target": lm_target, "lm_equals_reference": lm_reference,
            "lm_success_rate": lm_target / n if n else float("nan"),
            "most_common_lm_changes": instead.most_common(5)}


def main(argv: Sequence[str] | None = None) -> int:
    from ..asr.ctc import CTCRecognizer
    from ..asr.lm import load_default_lm, make_decoder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="attack run folders (asrguard attack --out DIR)")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--lm-weight", type=float, default=0.5)
    parser.add_argument("--word-bonus", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object per run")
    args = parser.parse_args(argv)
    recognizer = CTCRecognizer.load(args.model)
    decoder = make_decoder(load_default_lm(), alpha=args.lm_weight, beta=args.word_bonus)
    for run in args.runs:
        result = decode_attack_run(recognizer, run, decoder)
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{run}: {result['n_successful']} successful; greedy = target {result['greedy_equals_target']}, "
                  f"LM = target {result['lm_equals_target']}, LM = original {result['lm_equals_reference']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
