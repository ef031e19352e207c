"""Named train / test sets built from the real corpora, split by speaker.

Held-out speakers are fixed here, in one place, so that training, ``asrguard asr-eval``,
the attacks and the detectors all agree on which speakers were never trained on:

* FSDD: speaker ``theo`` is held out; the other five train.
* Speech Commands: speakers are split by a stable hash, about 20 % held out
  (:func:`asrguard.data.split_by_speaker` with ``test_fraction=0.2, seed=0``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..audio import DEFAULT_SAMPLE_RATE, load_audio
from ..data import (generate_connected_digit_audio, read_english_speech, read_fsdd, read_speech_commands,
                    read_urbansound8k, split_by_speaker)
from ..data.records import Utterance
from ..errors import DataError
from ..text import DIGIT_WORDS

FSDD_TEST_SPEAKERS = ("theo",)
SC_TEST_FRACTION = 0.2
SPLIT_SEED = 0
#: UrbanSound8K folds that training may use as non-speech (empty transcript). Every other fold is
#: held out, and the US attack draws its carriers from those. Folds, not clips: the slices of one
#: Freesound recording share a fold.
URBANSOUND_TRAIN_FOLDS = ("fold2", "fold3")
CORPORA = ("fsdd-digits", "fsdd-isolated", "speech-commands", "sc-digits", "english-speech")


def default_data_root() -> Path:
    """``$ASRGUARD_DATA`` if set, else ``../shared/data`` next to the repository, else cwd-relative."""
    env = os.environ.get("ASRGUARD_DATA")
    if env:
        return Path(env)
    repo_relative = Path(__file__).resolve().parents[3].parent / "shared" / "data"
    if repo_relative.exists():
        return repo_relative
    return Path("../shared/data")


def _require(root: Path, sub: str) -> Path:
    path = root / sub
    if not path.exists():
        raise DataError(f"{path}: corpus folder not found; pass --data-root or set ASRGUARD_DATA")
    return path


def fsdd_records(root: Path, split: str):
    records = read_fsdd(_require(root, "fsdd"))
    held_out = set(FSDD_TEST_SPEAKERS)
    return [r for r in records if (r.speaker in held_out) == (split == "test")]


def speech_commands_records(root: Path, split: str):
    records = read_speech_commands(_require(root, "speech_commands_v0.02_test"))
    records = split_by_speaker(records, test_fraction=SC_TEST_FRACTION, seed=SPLIT_SEED)
    return [r for r in records if r.split == split]


def urbansound_records(root: Path, split: str):
    """UrbanSound8K clips of the split: ``train`` = :data:`URBANSOUND_TRAIN_FOLDS`, ``test`` = the rest.

    Reads ``root/urbansound8k_subset`` (the shared subset) or else ``root/urbansound8k``.
    Clips whose folder names no fold are held out.
    """
    folder = root / "urbansound8k_subset"
    records = read_urbansound8k(folder if folder.exists() else root / "urbansound8k")
    return [r for r in records if (Path(r.path).parent.name in URBANSOUND_TRAIN_FOLDS) == (split == "train")]


def load_records(records, sample_rate: int = DEFAULT_SAMPLE_RATE) -> list[Utterance]:
    """Copies of ``records`` holding their audio, decoded at ``sample_rate``."""
    return [r.with_waveform(load_audio(r.path, sample_rate)[0], sample_rate) for r in records]


def english_speech_records(root: Path, *, min_seconds: float = 0.0, max_seconds: float = float("inf")):
    """The real English speech set (every item; none of it trains anything here)."""
    records = read_english_speech(_require(root, "english_speech"))
    return [r for r in records if min_seconds <= r.duration <= max_seconds]


def connected_digits(records, n: int, seed: int, *, min_digits: int = 1, max_digits: int = 7,
                     sample_rate: int = DEFAULT_SAMPLE_RATE) -> list[Utterance]:
    digits = [r for r in records if r.transcript in DIGIT_WORDS]
    pairs = generate_connected_digit_audio(digits, n, seed, min_digits=min_digits, max_digits=max_digits,
                                           sample_rate=sample_rate)
    return [u.with_waveform(w) for w, u in pairs]


def evaluation_set(corpus: str, split: str = "test", root: Path | None = None,
                   *, limit: int | None = None, seed: int = 1234) -> list[Utterance]:
    """The named evaluation set (deterministic, each :class:`Utterance` holding its waveform): what
    ``asrguard asr-eval`` scores.

    * ``fsdd-digits``: 300 connected-digit utterances (1–7 digits) of the split's FSDD speakers;
    * ``fsdd-isolated``: the split's FSDD recordings as they are;
    * ``speech-commands``: every word clip of the split's Speech Commands speakers;
    * ``sc-digits``: 200 connected-digit utterances from Speech Commands digit words;
    * ``english-speech``: the 895 real English utterances of ``english_speech`` (no train split:
      nothing here is trained on them), each with its reporting subset as ``source``.
    """
    root = Path(root) if root is not None else default_data_root()
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    if corpus == "fsdd-digits":
        items = connected_digits(fsdd_records(root, split), limit or 300, seed)
    elif corpus == "fsdd-isolated":
        items = load_records(fsdd_records(root, split))
    elif corpus == "speech-commands":
        items = load_records(speech_commands_records(root, split))
    elif corpus == "sc-digits":
        items = connected_digits(speech_commands_records(root, split), limit or 200, seed,
                                 max_digits=5)
    elif corpus == "english-speech":
        if split != "test":
            raise DataError("english-speech has only a test split")
        records = english_speech_records(root)
        if limit is not None and len(records) > limit:  # pick before decoding: the set is large
            rng = np.random.default_rng(seed)
            records = [records[i] for i in sorted(rng.choice(len(records), limit, replace=False))]
        items = load_records(records)
    else:
        raise DataError(f"unknown corpus {corpus!r}; choose from {', '.join(CORPORA)}")
    if limit is not None and len(items) > limit:
        rng = np.random.default_rng(seed)
        items = [items[i] for i in sorted(rng.choice(len(items), limit, replace=False))]
    return items
