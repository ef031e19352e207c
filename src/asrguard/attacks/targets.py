"""Target transcripts for targeted attacks, drawn reproducibly and sized to each utterance.

A CTC model emits at most one character per output frame (20 ms for the shipped model) and
needs a blank between doubled letters, so a target of ``k`` characters needs at least
``required_frames(target) ≈ k`` frames. That is a hard limit, not a comfortable one: the
recogniser learned speech at roughly 10-12 characters per second (one character per 4-5
frames), and targets much denser than that were reached far less often in our tuning runs
(at a fill of 0.6, 3 of 16 utterances within 400 steps at −25 dB; at 0.2, 16 of 16 within
1000). :class:`TargetSampler` therefore only offers targets whose ``required_frames`` is at
most ``max_fill`` (default 0.2, i.e. 10 characters per second) times the frames the
utterance has; if none fits, the shortest candidate that fits at all is used, and an
utterance too short even for that is reported (``None``). The paper's 41-character target
thus goes to utterances of about 4.2 s and more; shorter ones get a shorter command.

Every draw depends only on ``(seed, item id)``, never on batch order, so a resumed run gets
the same targets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from ..text import DIGIT_WORDS, normalize_transcript
from .base import required_frames

#: The target of Jayashankar et al. (2020).
PAPER_TARGET = "okay google unlock phone and delete files"

#: Command phrases of different lengths, so short clips get short commands.
COMMAND_PHRASES = (
    PAPER_TARGET,
    "okay google unlock phone",
    "unlock phone and delete files",
    "delete all files",
    "open the front door",
    "call nine one one",
    "turn off the alarm",
    "send money now",
    "transfer funds",
    "disable camera",
    "open website",
    "unlock the car",
    "delete files",
    "open door",
    "call home",
    "lights off",
    "stop",
    "go",
    "yes",
)

TARGET_KINDS = ("mixed", "paper", "commands", "digits")


def random_digit_string(rng: np.random.Generator, min_digits: int = 1, max_digits: int = 5) -> str:
    """Digits spelled out, e.g. ``"three one four"``.

    Example:
        >>> random_digit_string(np.random.default_rng(0), 3, 3)
        'eight six five'
    """
    n = int(rng.integers(min_digits, max_digits + 1))
    return " ".join(DIGIT_WORDS[int(d)] for d in rng.integers(0, 10, size=n))


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


@dataclass
class TargetSampler:
    """Pick a target per utterance from a seeded RNG.

    Kinds:
        * ``paper``: always :data:`PAPER_TARGET` (utterances too short for it get ``None``);
        * ``commands``: a phrase from ``phrases`` that fits;
        * ``digits``: a random digit string whose length fits;
        * ``mixed`` (default): the paper target when it fits within ``max_fill``, else a
          fitting command phrase.

    A candidate equal to the utterance's own transcript is never chosen.

    Example:
        >>> sampler = TargetSampler("mixed", seed=0)
        >>> sampler.choose("fsdd:one", available_frames=250)
        'okay google unlock phone and delete files'
        >>> len(sampler.choose("sc:stop", available_frames=50)) <= 10
        True
    """

    kind: str = "mixed"
    seed: int = 0
    max_fill: float = 0.2
    phrases: Sequence[str] = field(default_factory=lambda: COMMAND_PHRASES)
    min_digits: int = 1
    max_digits: int = 7

    def __post_init__(self):
        if self.kind not in TARGET_KINDS:
            raise ConfigError(f"target kind must be one of {TARGET_KINDS}, got {self.kind!r}")
        if not 0.0 < self.max_fill <= 1.0:
            raise ConfigError(f"max_fill must be in (0, 1], got {self.max_fill}")
        self.phrases = tuple(normalize_transcript(p) for p in self.phrases)
        if not self.phrases or any(not p for p in self.phrases):
            raise ConfigError("phrases must be non-empty strings")

    def rng(self, item_id: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, _stable_int(item_id)])

    def choose(self, item_id: str, available_frames: int, exclude: str = "") -> str | None:
        """The target for one utterance with ``available_frames`` output frames (``None``: none fits)."""
        rng = self.rng(item_id)
        exclude = normalize_transcript(exclude)
        budget = self.max_fill * available_frames
        if self.kind in ("paper", "mixed"):
            paper = normalize_transcript(PAPER_TARGET)
            if required_frames(paper) <= budget and paper != exclude:
                return paper
            if self.kind == "paper":
                return None
        if self.kind == "digits":
            for _ in range(100):
                candidate = random_digit_string(rng, self.min_digits, self.max_digits)
                if required_frames(candidate) <= budget and candidate != exclude:
                    return candidate
            candidate = random_digit_string(rng, 1, 1)
            return candidate if required_frames(candidate) <= available_frames and candidate != exclude else None
        fitting = [p for p in self.phrases if required_frames(p) <= budget and p != exclude]
        if fitting:
            return fitting[int(rng.integers(len(fitting)))]
        possible = sorted((p for p in self.phrases if required_frames(p) <= available_frames and p != exclude),
                          key=required_frames)
        return possible[0] if possible else None


@dataclass
class FixedTargets:
    """Targets the user chose: one for every item (``default``), or one per item id (``by_id``).

    Same ``choose`` as :class:`TargetSampler`, so the attack runner takes either; whether the
    target fits an utterance is left to the recogniser (``target_fits``).

    Example:
        >>> FixedTargets("Open the door").choose("input:a.wav", available_frames=120)
        'open the door'
        >>> FixedTargets(by_id={"input:b.wav": "call home"}).choose("input:a.wav", 120) is None
        True
    """

    default: str | None = None
    by_id: dict = field(default_factory=dict)

    def choose(self, item_id: str, available_frames: int, exclude: str = "") -> str | None:
        target = normalize_transcript(self.by_id.get(item_id, self.default) or "")
        return target or None


__all__ = ["COMMAND_PHRASES", "PAPER_TARGET", "TARGET_KINDS", "FixedTargets", "TargetSampler", "random_digit_string"]
