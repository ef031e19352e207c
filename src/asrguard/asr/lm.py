"""A word bigram language model and CTC prefix beam search with it (shallow fusion).

Greedy CTC decoding spells each word from the acoustics alone, so a held-out "off" often comes
out as "of" and "left" as "lef". A word language model fitted on the training transcripts
fixes most such near misses while still allowing any sentence: words it never saw get a
per-character probability instead of zero.

Beam search (Hannun et al. 2014, prefix search) keeps, for every candidate prefix, the
probability of the paths that end in a blank and of those that end in its last character.
When a word is completed (a space, or the end of the utterance) the prefix's score gains
``alpha·log P(word | previous word) + beta``; ``beta`` is a word bonus that stops the LM
from favouring fewer, longer words.

Example:
    >>> lm = WordBigramLM.fit(["turn off the light", "off", "up"])
    >>> lm.log_prob("<s>", "off") > lm.log_prob("<s>", "of")
    True
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..data import tts
from ..errors import ConfigError
from ..text import CHAR_TO_INDEX, CHARACTERS, DIGIT_WORDS, normalize_transcript
from . import recipes

START, END = "<s>", "</s>"
NEG_INF = -math.inf


@dataclass
class WordBigramLM:
    """Interpolated bigram: ``λ·c(v, w)/c(v) + (1 − λ)·P_uni(w)``; unseen words by spelling.

    Attributes:
        unigrams / bigrams: counts from the fitted sentences (``<s>`` and ``</s>`` included).
        interpolation: λ, the weight of the bigram estimate where the history was seen.

    Unigrams are add-one smoothed; the one extra count goes to unseen words, which share it
    by spelling at 1/27 per character.
    """

    unigrams: dict = field(default_factory=dict)
    bigrams: dict = field(default_factory=dict)
    interpolation: float = 0.7

    @classmethod
    def fit(cls, sentences: Iterable[str], interpolation: float = 0.7) -> "WordBigramLM":
        if not 0.0 <= interpolation < 1.0:
            raise ConfigError(f"interpolation must be in [0, 1), got {interpolation}")
        unigrams: Counter = Counter()
        bigrams: dict = defaultdict(Counter)
        for sentence in sentences:
            words = [START, *normalize_transcript(sentence).split(), END]
            if len(words) == 2:
                continue
            unigrams.update(words[1:])
            for v, w in zip(words[:-1], words[1:]):
                bigrams[v][w] += 1
        if not unigrams:
            raise ConfigError("no words to fit a language model on")
        return cls(dict(unigrams), {v: dict(c) for v, c in bigrams.items()}, interpolation)

    def __post_init__(self):
        self._total = sum(self.unigrams.values())
        self._history = {v: sum(c.values()) for v, c in self.bigrams.items()}

    def _unigram(self, word: str) -> float:
        denominator = self._total + len(self.unigrams) + 1
        if word in self.unigrams:
            return (self.unigrams[word] + 1) / denominator
        return 1.0 / denominator * (1.0 / 27.0) ** max(1, len(word))

    def log_prob(self, previous: str, word: str) -> float:
        """``log P(word | previous)``; ``previous`` may be ``<s>``, ``word`` may be ``</s>``."""
        p = self._unigram(word)
        seen = self._history.get(previous, 0)
        if seen:
            p = self.interpolation * self.bigrams[previous].get(word, 0) / seen + (1 - self.interpolation) * p
        return math.log(p)

    def to_dict(self) -> dict:
        return {"format": "asrguard-word-bigram", "version": 1, "interpolation": self.interpolation,
                "unigrams": self.unigrams, "bigrams": self.bigrams}

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), sort_keys=True) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path) -> "WordBigramLM":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != "asrguard-word-bigram":
            raise ConfigError(f"{path}: not an asrguard word bigram file")
        return cls(data["unigrams"], data["bigrams"], float(data["interpolation"]))


def _words(prefix: tuple) -> list[str]:
    return "".join(CHARACTERS[c] for c in prefix).split()


def beam_search(log_probs: np.ndarray, lm: WordBigramLM | None = None, *, alpha: float = 0.5,
                beta: float = 1.0, beam_width: int = 16, prune_log_prob: float = -10.0) -> str:
    """Best transcript of one utterance's ``(T, C)`` CTC log-probabilities (blank = 0).

    Without ``lm`` (or with ``alpha = 0`` and ``beta = 0``) this is plain prefix beam search.
    Characters below ``prune_log_prob`` in a frame are not expanded.

    Example:
        >>> lp = np.log(np.eye(29)[[0, 9, 9, 0, 10]] * 0.98 + 0.02 / 29)
        >>> beam_search(lp)
        'hi'
    """
    if log_probs.ndim != 2 or log_probs.shape[1] != len(CHARACTERS):
        raise ConfigError(f"expected (T, {len(CHARACTERS)}) log-probabilities, got {log_probs.shape}")
    space = CHAR_TO_INDEX[" "]
    lm_cache: dict = {(): 0.0}

    def lm_score(prefix: tuple) -> float:
        """LM score of the completed words of ``prefix`` (memoised on the prefix)."""
        if prefix in lm_cache:
            return lm_cache[prefix]
        if lm is None or prefix[-1] != space:
            score = lm_score(prefix[:-1])
        else:
            words = _words(prefix)
            previous = words[-2] if len(words) > 1 else START
            score = lm_score(prefix[:-1]) + alpha * lm.log_prob(previous, words[-1]) + beta
        lm_cache[prefix] = score
        return score

    beams: dict = {(): (0.0, NEG_INF)}  # prefix -> (log P ending in blank, log P ending in its last char)
    for frame in log_probs:
        expand = np.nonzero(frame > prune_log_prob)[0]
        nxt: dict = defaultdict(lambda: [NEG_INF, NEG_INF])
        for prefix, (p_blank, p_char) in beams.items():
            total = np.logaddexp(p_blank, p_char)
            last = prefix[-1] if prefix else None
            for c in expand:
                p = float(frame[c])
                if c == 0 or (c == space and (last is None or last == space)):
                    # a blank, or a space that would only lead or double: the prefix stays
                    slot = nxt[prefix]
                    slot[0] = np.logaddexp(slot[0], total + p)
                elif c == last:
                    slot = nxt[prefix]  # the same character continues
                    slot[1] = np.logaddexp(slot[1], p_char + p)
                    slot = nxt[prefix + (c,)]  # a new one, only after a blank
                    slot[1] = np.logaddexp(slot[1], p_blank + p)
                else:
                    slot = nxt[prefix + (c,)]
                    slot[1] = np.logaddexp(slot[1], total + p)
        ranked = sorted(nxt.items(), key=lambda kv: np.logaddexp(*kv[1]) + lm_score(kv[0]), reverse=True)
        beams = {prefix: tuple(p) for prefix, p in ranked[:beam_width]}

    def final(prefix: tuple, probs) -> float:
        score = np.logaddexp(*probs) + lm_score(prefix)
        if lm is None:
            return score
        words = _words(prefix)
        if prefix and prefix[-1] != space and words:  # the last word is still open
            previous = words[-2] if len(words) > 1 else START
            score += alpha * lm.log_prob(previous, words[-1]) + beta
        return score + alpha * lm.log_prob(words[-1] if words else START, END)

    best = max(beams.items(), key=lambda kv: final(*kv))[0]
    return " ".join(_words(best))


def training_sentences(root=None, *, seed: int = 0, n_tts_sentences: int = 700,
                       n_digit_strings: int = 2500) -> list[str]:
    """The transcripts the shipped model was trained on, as LM text (no audio is read).

    Speech Commands and FSDD words of the training speakers, the TTS command sentences of the
    training recipe, and ``n_digit_strings`` seeded strings of 1-7 digit words (the recipe's
    connected digits are drawn afresh every epoch, so their exact strings are not kept).
    """
    root = Path(root) if root is not None else recipes.default_data_root()
    sentences = [r.transcript for r in recipes.speech_commands_records(root, "train")]
    sentences += [r.transcript for r in recipes.fsdd_records(root, "train")]
    sentences += tts.default_sentences(seed=seed, n=n_tts_sentences)
    rng = np.random.default_rng([seed, 4711])
    sentences += [" ".join(DIGIT_WORDS[int(d)] for d in rng.integers(0, 10, size=int(rng.integers(1, 8))))
                  for _ in range(n_digit_strings)]
    return sentences


def default_lm_path() -> Path:
    return Path(__file__).resolve().parent.parent / "assets" / "lm" / "default.json"


def load_default_lm() -> WordBigramLM:
    """The LM shipped beside the default model (fitted by :func:`training_sentences`)."""
    return WordBigramLM.load(default_lm_path())


def make_decoder(lm: WordBigramLM | None, *, alpha: float = 0.5, beta: float = 1.0, beam_width: int = 16):
    """``(log_probs (B, T, C), lengths) -> list[str]`` with :func:`beam_search`, for batches."""
    if alpha < 0 or beam_width < 1:
        raise ConfigError("need alpha >= 0 and beam_width >= 1")

    def decode(log_probs, lengths) -> list[str]:
        lp = log_probs.detach().cpu().numpy()
        return [beam_search(lp[i, : int(n)], lm, alpha=alpha, beta=beta, beam_width=beam_width)
                for i, n in enumerate(lengths.tolist())]

    return decode


__all__ = ["WordBigramLM", "beam_search", "default_lm_path", "load_default_lm", "make_decoder",
           "training_sentences"]
