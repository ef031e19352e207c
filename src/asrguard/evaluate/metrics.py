"""Recognition metrics: CER, WER, word accuracy; detection metrics live beside them."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import jiwer


def recognition_metrics(references: Sequence[str], hypotheses: Sequence[str]) -> dict:
    """CER, WER, word accuracy (1 − WER) and exact-match utterance accuracy.

    Empty references are scored by exact match only (jiwer cannot score them).

    Example:
        >>> recognition_metrics(["one two"], ["one too"])["wer"]
        0.5
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("no utterances to score")
    pairs = [(r, h) for r, h in zip(references, hypotheses) if r.strip()]
    exact = sum(r.strip() == h.strip() for r, h in zip(references, hypotheses)) / len(references)
    result = {"n_utterances": len(references), "utterance_accuracy": exact}
    if pairs:
        refs, hyps = zip(*pairs)
        wer = jiwer.wer(list(refs), list(hyps))
        cer = jiwer.cer(list(refs), list(hyps))
        result.update(cer=float(cer), wer=float(wer), word_accuracy=float(1.0 - wer))
    return result


def word_errors(references: Sequence[str], hypotheses: Sequence[str], top: int = 15) -> dict:
    """Where the word errors are: per reference word, and the most frequent confusions.

    Words are aligned as for WER (utterances with an empty reference are skipped). Returns
    ``per_word`` (``{word: {"n", "correct", "accuracy"}}``, worst first), ``substitutions``
    (``[reference word, recognised word, count]``), ``deletions`` and ``insertions``
    (``[word, count]``), each the ``top`` most frequent.

    Example:
        >>> e = word_errors(["off", "off", "go left"], ["of", "off", "no left"])
        >>> e["per_word"]["off"], e["substitutions"][0]
        ({'n': 2, 'correct': 1, 'accuracy': 0.5}, ['go', 'no', 1])
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    pairs = [(r, h) for r, h in zip(references, hypotheses) if r.strip()]
    seen, correct = Counter(), Counter()
    substitutions, deletions, insertions = Counter(), Counter(), Counter()
    if pairs:
        aligned = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
        for ref, hyp, chunks in zip(aligned.references, aligned.hypotheses, aligned.alignments):
            seen.update(ref)
            for chunk in chunks:
                ref_part = ref[chunk.ref_start_idx:chunk.ref_end_idx]
                hyp_part = hyp[chunk.hyp_start_idx:chunk.hyp_end_idx]
                if chunk.type == "equal":
                    correct.update(ref_part)
                elif chunk.type == "substitute":
                    substitutions.update(zip(ref_part, hyp_part))
                elif chunk.type == "delete":
                    deletions.update(ref_part)
                elif chunk.type == "insert":
                    insertions.update(hyp_part)
    per_word = {w: {"n": n, "correct": correct[w], "accuracy": correct[w] / n} for w, n in seen.items()}
    # worst first; ties by frequency, then alphabetically
    per_word = dict(sorted(per_word.items(), key=lambda kv: (kv[1]["accuracy"], -kv[1]["n"], kv[0])))
    return {"per_word": per_word,
            "substitutions": [[r, h, c] for (r, h), c in _most_common(substitutions, top)],
            "deletions": [[w, c] for w, c in _most_common(deletions, top)],
            "insertions": [[w, c] for w, c in _most_common(insertions, top)]}


def _most_common(counts, top: int) -> list:
    """``Counter.most_common`` with ties broken by key, so the order never depends on the input order."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
