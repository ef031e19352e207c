"""Transcript normalisation shared by data readers, recognisers and metrics."""

from __future__ import annotations

import functools
import re

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: Output characters of the CTC recogniser; index 0 is the CTC blank.
BLANK = "_"
CHARACTERS = (BLANK, " ", *"abcdefghijklmnopqrstuvwxyz", "'")
CHAR_TO_INDEX = {c: i for i, c in enumerate(CHARACTERS)}

_NOT_ALLOWED = re.compile(r"[^a-z' ]+")
_SPACES = re.compile(r"\s+")


def normalize_transcript(text: str) -> str:
    """Lowercase, spell out single digits, drop punctuation other than apostrophes.

    Example:
        >>> normalize_transcript("OK Google, call 911!")
        'ok google call nine one one'
    """
    text = text.lower().replace("-", " ").replace("_", " ")
    text = re.sub(r"\d", lambda m: f" {DIGIT_WORDS[int(m.group())]} ", text)
    text = _NOT_ALLOWED.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def lower_single_spaced(text: str) -> str:
    """Lower case with single spaces: how CTC-style transcripts (HF, ART models) are compared.

    Example:
        >>> lower_single_spaced(" OKAY   GOOGLE ")
        'okay google'
    """
    return " ".join(text.lower().split())


@functools.lru_cache(maxsize=1)
def _english_normalizer():
    # transformers ships Whisper's English normaliser; imported on first use (it is heavy).
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer({})


def normalize_english(text: str) -> str:
    """Whisper's English normalisation, used for WER and for comparing Whisper transcripts.

    Lower case; brackets, fillers ("um", "hmm") and most punctuation removed; contractions and
    titles spelled one way ("mr" -> "mister"); numbers written as digits ("twenty one" -> "21",
    "two thousand" -> "2000"). The British-to-American spelling table is not applied.

    Example:
        >>> normalize_english("Mr. Smith paid twenty-one dollars, didn't he?")
        'mister smith paid $21 did not he'
    """
    return _english_normalizer()(text)


def encode(text: str) -> list[int]:
    """Character indices of a normalised transcript (no blanks).

    Example:
        >>> encode("hi")
        [9, 10]
    """
    return [CHAR_TO_INDEX[c] for c in normalize_transcript(text)]


def decode_indices(indices) -> str:
    return "".join(CHARACTERS[i] for i in indices if i != 0)
