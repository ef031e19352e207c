"""Where attacks get their inputs: held-out corpus utterances, UrbanSound8K carriers or the user's own files.

Every input is an :class:`~asrguard.data.records.Utterance` holding its waveform.

Example:
    >>> items = load_items(["fsdd-digits"], n=4, seed=0)          # doctest: +SKIP
    >>> items[0].id                                              # doctest: +SKIP
    'fsdd-digits:...'
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from ..asr.recipes import default_data_root, evaluation_set, load_records, urbansound_records
from ..audio import load_audio
from ..data.files import collect_audio
from ..data.records import Utterance
from ..errors import ConfigError, DataError

SPEECH_CORPORA = ("fsdd-digits", "speech-commands", "sc-digits", "fsdd-isolated", "english-speech")
URBAN = "urbansound8k"
DEFAULT_CORPUS = {"us": URBAN}
DEFAULT_SPEECH = "fsdd-digits,speech-commands"


def load_items(corpora: list[str], n: int, seed: int, root: Path | None = None, sample_rate: int = 16_000,
               max_seconds: float | None = None, min_seconds: float | None = None) -> list[Utterance]:
    """``n`` held-out items split evenly over ``corpora`` (ids prefixed with the corpus name).

    ``max_seconds`` keeps only utterances up to that length (drawn, seeded, from the whole
    held-out set): attack cost grows with length, and so does the speech the perturbation
    has to overwrite. ``min_seconds`` keeps only utterances at least that long (a long target
    such as the paper's needs room).
    """
    root = Path(root) if root is not None else default_data_root()
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    shares = [n // len(corpora) + (1 if i < n % len(corpora) else 0) for i in range(len(corpora))]
    items: list[Utterance] = []
    for corpus, share in zip(corpora, shares):
        if share == 0:
            continue
        if corpus == URBAN:
            items += _urban_items(root, share, seed, sample_rate, max_seconds, min_seconds)
            continue
        if corpus not in SPEECH_CORPORA:
            raise ConfigError(f"unknown corpus {corpus!r}; choose from {', '.join(SPEECH_CORPORA + (URBAN,))}")
        if max_seconds is None and min_seconds is None:
            pool = evaluation_set(corpus, "test", root, limit=share, seed=seed)
        else:
            pool = [u for u in evaluation_set(corpus, "test", root, seed=seed)
                    if _within(len(u.waveform) / sample_rate, min_seconds, max_seconds)]
            rng = np.random.default_rng(seed)
            pool = [pool[i] for i in sorted(rng.choice(len(pool), min(share, len(pool)), replace=False))]
        for u in pool:
            items.append(dataclasses.replace(u, id=f"{corpus}:{u.id}"))
    return items


def _within(seconds: float, min_seconds: float | None, max_seconds: float | None) -> bool:
    return (min_seconds is None or seconds >= min_seconds) and (max_seconds is None or seconds <= max_seconds)


def _urban_items(root: Path, n: int, seed: int, sample_rate: int, max_seconds: float | None = None,
                 min_seconds: float | None = None) -> list[Utterance]:
    """``n`` carriers from the held-out UrbanSound8K folds (training may use the others as non-speech)."""
    records = [r for r in urbansound_records(root, "test") if _within(r.duration, min_seconds, max_seconds)]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(records), min(n, len(records)), replace=False))
    return load_records([records[i] for i in chosen], sample_rate)  # transcripts are empty: no speech


def input_items(paths: list[Path], sample_rate: int) -> list[Utterance]:
    """The user's own audio (files or folders) as attack items, ids ``input:<path>``."""
    items = []
    for path in collect_audio(paths, "input"):
        waveform, _ = load_audio(path, sample_rate)
        items.append(Utterance.from_waveform(f"input:{path}", waveform, sample_rate, source="input", path=str(path)))
    return items


def read_target_table(path: Path) -> dict[str, str]:
    """``file,target`` rows (a header line is allowed) as ``{item id: target}`` for :func:`input_items`."""
    table = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            if not row or row[0].strip().lower() in ("file", "path"):
                continue
            if len(row) < 2 or not row[1].strip():
                raise DataError(f"{path}: each row needs a file and a target, got {row}")
            file = Path(row[0].strip())
            if not file.is_absolute():
                file = path.parent / file
            table[f"input:{file}"] = row[1].strip()
    if not table:
        raise DataError(f"{path}: no file,target rows")
    return table


__all__ = ["DEFAULT_CORPUS", "DEFAULT_SPEECH", "SPEECH_CORPORA", "URBAN", "input_items", "load_items",
           "read_target_table"]
