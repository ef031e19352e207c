"""What happens to finished attacks if the recogniser decodes with the word-bigram LM instead of greedily.

The attacks craft and check their examples against greedy CTC decoding, the recogniser's
transcript. Beam search with the shipped LM (``asrguard asr-eval --decoder lm``) reads the same
posteriors differently. For every successful example of each attack run this decodes the
adversarial audio both ways and counts how often the LM transcript is still the target, how
often it returns to the original transcript, and what it says instead. The figures help decide
whether LM decoding can become the recogniser's transcript without re-crafting every attack.

``--adaptive-cw DIR`` instead asks what an attacker who knows about the LM achieves: it runs CW
against :class:`LMDecodingRecognizer` (success is checked on the LM transcript; the gradient
is the same CTC loss) and, for comparison, plain CW on the same held-out utterances and targets.

    python -m asrguard.experiments.lm_decoding runs/attacks/cw runs/attacks/dr --json
    python -m asrguard.experiments.lm_decoding --adaptive-cw runs/lm_cw --n 32
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..asr.base import AudioBatch, Realizations, Recognizer
from ..asr.ctc import CTCRecognizer
from ..asr.lm import load_default_lm, make_decoder
from ..attacks.cw import CWAttack, CWConfig
from ..attacks.runner import MANIFEST, report, run_attack
from ..attacks.sources import load_items
from ..attacks.targets import TargetSampler
from ..audio import load_audio
from ..data import read_jsonl
from ..errors import DataError


class LMDecodingRecognizer(Recognizer):
    """``base`` with its transcript replaced by ``lm_decoder``; everything else is ``base``'s.

    Attacks see only the Recognizer interface, so wrapping is all it takes to attack the
    LM-decoded recogniser. Realisations keep ``base``'s own (greedy) decoding.

    Example:
        >>> rec = LMDecodingRecognizer(CTCRecognizer.load(), make_decoder(load_default_lm()))  # doctest: +SKIP
        >>> CWAttack(rec).generate(batch, ["open the door"])                                   # doctest: +SKIP
    """

    def __init__(self, base: Recognizer, lm_decoder: Callable):
        self.base, self.lm_decoder = base, lm_decoder
        self.sample_rate = base.sample_rate
        self.checksum = getattr(base, "checksum", None)

    @property
    def vocabulary(self):
        return self.base.vocabulary

    def target_fits(self, batch, targets):
        return self.base.target_fits(batch, targets)

    def log_probs(self, batch):
        return self.base.log_probs(batch)

    def loss(self, batch, targets):
        return self.base.loss(batch, targets)

    def decode(self, log_probs, lengths):
        return self.lm_decoder(log_probs, lengths)

    def stochastic(self, p=None, *, seed):
        return self.base.stochastic(p, seed=seed)

    def realizations(self, audio, n, seed=0, *, p=None) -> Realizations:
        return self.base.realizations(audio, n, seed, p=p)

    def realization_scheme(self, precision="auto"):
        return self.base.realization_scheme(precision)


def decode_attack_run(recognizer, run_dir: str | Path, lm_decoder: Callable) -> dict:
    """Greedy and LM transcripts of an attack run's successful examples, with counts.

    ``lm_decoder`` takes ``(log_probs, lengths)`` like :func:`asrguard.asr.lm.make_decoder`'s result.

    Example:
        >>> decode_attack_run(rec, "runs/attacks/cw", make_decoder(load_default_lm()))["lm_success_rate"]  # doctest: +SKIP
        0.663
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


def adaptive_cw(recognizer, lm_decoder: Callable, out_dir: str | Path, *, n: int = 32, seed: int = 0,
                batch_size: int = 16, progress: bool = True) -> dict:
    """CW against greedy decoding and against LM decoding, on the same held-out items and targets.

    Example:
        >>> adaptive_cw(rec, make_decoder(load_default_lm()), "runs/lm_cw", n=32)["lm"]["success_rate"]  # doctest: +SKIP
        0.8125
    """
    out_dir = Path(out_dir)
    items = load_items(["fsdd-digits", "speech-commands"], n, seed, sample_rate=recognizer.sample_rate)
    result = {}
    for name, victim in (("greedy", recognizer), ("lm", LMDecodingRecognizer(recognizer, lm_decoder))):
        run_attack(CWAttack(victim, CWConfig(seed=seed)), items, out_dir / name,
                   sampler=TargetSampler("mixed", seed=seed), batch_size=batch_size, progress=progress,
                   meta={"experiment": "lm_decoding", "decoder": name})
        summary = report(out_dir / name)
        result[name] = {k: summary[k] for k in ("n", "success_rate", "mean_db_x_delta", "seconds_per_success")}
    result["greedy_examples_under_lm"] = decode_attack_run(recognizer, out_dir / "greedy", lm_decoder)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="attack run folders (asrguard attack --out DIR)")
    parser.add_argument("--adaptive-cw", type=Path, default=None, metavar="DIR",
                        help="run CW against greedy and against LM decoding on the same items; results in DIR")
    parser.add_argument("--n", type=int, default=32, help="held-out utterances for --adaptive-cw")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--lm-weight", type=float, default=0.5)
    parser.add_argument("--word-bonus", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object per run")
    args = parser.parse_args(argv)
    recognizer = CTCRecognizer.load(args.model)
    decoder = make_decoder(load_default_lm(), alpha=args.lm_weight, beta=args.word_bonus)
    if args.adaptive_cw is not None:
        result = adaptive_cw(recognizer, decoder, args.adaptive_cw, n=args.n, seed=args.seed)
        print(json.dumps(result, indent=1))
        return 0
    if not args.runs:
        parser.error("give attack run folders, or --adaptive-cw DIR")
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
