"""Connected-digit utterances for the hybrid recogniser: corpora, TTS voices, augmentation, data sets.

Connected strings of 1-5 digits are built from FSDD and Speech Commands digit words; the
speaker split is the project's (FSDD ``theo`` and a fifth of the Speech Commands speakers are
held out). The training and development sets use training speakers only, optionally with
offline TTS voices for speaker variety. A data set is a ``list[Utterance]``, each record holding
its 16 kHz waveform and (for connected digits) its word boundaries in seconds.

Example:
    >>> utts = [Utterance.from_waveform("a", np.full(16000, 0.1, np.float32), 16000, "one")]
    >>> [u.id for u in augment(utts, seed=0)]
    ['a:aug0']
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from ...audio import load_audio, resample
from ...data import (available_tts_engines, build_tts_corpus, generate_connected_digit_audio, read_fsdd,
                     read_speech_commands, split_by_speaker)
from ...data.records import Utterance
from ...errors import DataError
from ...text import DIGIT_WORDS

log = logging.getLogger(__name__)

FSDD_TEST_SPEAKERS = ("theo",)
SPEECH_COMMANDS_TEST_FRACTION = 0.2
SPLIT_SEED = 0


def digit_records(data_root, *, with_speech_commands: bool = True) -> list:
    """FSDD and Speech Commands digit-word records with ``split`` set the project's way.

    FSDD: speaker ``theo`` is test, everyone else train. Speech Commands: all clips are split
    by speaker with ``split_by_speaker(test_fraction=0.2, seed=0)`` (over the whole test set, so
    the split matches the rest of the project), then only the digit words are kept.

    Example:
        >>> train = [r for r in digit_records("../shared/data") if r.split == "train"]  # doctest: +SKIP
    """
    root = Path(data_root)
    fsdd_dir = root / "fsdd"
    if not fsdd_dir.is_dir():
        raise DataError(f"{fsdd_dir}: FSDD not found; pass --data-root (data_root= in Python) pointing at the folder holding fsdd/")
    records = split_by_speaker(read_fsdd(fsdd_dir), test_speakers=list(FSDD_TEST_SPEAKERS))
    sc_dir = root / "speech_commands_v0.02_test"
    if with_speech_commands and sc_dir.is_dir():
        sc = split_by_speaker(read_speech_commands(sc_dir), test_fraction=SPEECH_COMMANDS_TEST_FRACTION,
                              seed=SPLIT_SEED)
        records += [r for r in sc if r.transcript in DIGIT_WORDS]
    return records


#: TTS voices used for extra training speakers (those of engines that are not installed are skipped).
TTS_VOICES = (
    ("flite", "kal"), ("flite", "kal16"), ("flite", "awb"), ("flite", "rms"), ("flite", "slt"),
    *(("espeak-ng", v) for v in ("en-us", "en-us+m1", "en-us+m2", "en-us+m3", "en-us+m4", "en-us+f1", "en-us+f2",
                                 "en-us+f3", "en-us+f4", "en-gb", "en-gb+m2", "en-gb+f2", "en-gb-scotland",
                                 "en-029", "en-gb-x-rp")),
)


def tts_digit_records(out_dir, seed: int = 0, takes: int = 3) -> list:
    """Every TTS voice saying every digit word ``takes`` times at random rates (a voice = a speaker).

    Written under ``out_dir/take{k}`` (resumable); every record gets ``split = "train"``.

    Example:
        >>> records = tts_digit_records("runs/daubener2020/cache/tts")  # doctest: +SKIP
    """
    installed = set(available_tts_engines())
    voices = [v for v in TTS_VOICES if v[0] in installed]
    if not voices:
        log.warning("no TTS engine installed; training without TTS voices")
        return []
    records = []
    for take in range(takes):
        part = build_tts_corpus(list(DIGIT_WORDS), Path(out_dir) / f"take{take}", seed=seed * 100 + take,
                                voices=voices, per_sentence=len(voices))
        for r in part:
            r.split = "train"
            r.id = f"{r.id}:take{take}"
        records += part
    return records


def connected_digits(records, n: int, seed: int, split: str, *, min_digits: int = 1, max_digits: int = 5,
                     sample_rate: int = 16000) -> list[Utterance]:
    """``n`` connected-digit utterances of one split (1-5 digits of one speaker each), with their audio.

    Example:
        >>> utts = connected_digits(digit_records("../shared/data"), 10, seed=0, split="test")  # doctest: +SKIP
    """
    pairs = generate_connected_digit_audio(records, n, seed=seed, min_digits=min_digits, max_digits=max_digits,
                                           sample_rate=sample_rate, split=split)
    return [u.with_waveform(w) for w, u in pairs]


def augment(utts: list[Utterance], seed: int, *, speed: tuple[float, float] = (0.85, 1.15), p_speed: float = 0.6,
            snr_db: tuple[float, float] = (10.0, 40.0), p_noise: float = 0.5, p_lowpass: float = 0.3,
            sample_rate: int = 16000) -> list[Utterance]:
    """Light augmentation, one randomised copy per utterance (seeded by ``(seed, index)``).

    Speed perturbation (resampling by a factor in ``speed``; word boundaries scaled to match),
    additive white noise at ``snr_db`` relative to the utterance, and band-limiting to 4 kHz
    (so that bandwidth does not identify the corpus: FSDD is recorded at 8 kHz). The copies'
    ids end in ``:aug{seed}`` (see the module's example).
    """
    out = []
    for i, u in enumerate(utts):
        x, words = u.waveform, u.words
        rng = np.random.default_rng([seed, i, 7])
        y = np.asarray(x, dtype=np.float32)
        factor = 1.0
        if rng.random() < p_speed:
            factor = float(rng.uniform(*speed))
            y = resample(y, int(round(sample_rate * factor / 50)) * 50, sample_rate)
            factor = len(x) / max(len(y), 1)
        if rng.random() < p_lowpass:
            y = resample(resample(y, sample_rate, 8000), 8000, sample_rate)[: len(y)]
        if rng.random() < p_noise:
            power = float(np.mean(np.square(y))) or 1e-8
            noise = rng.normal(0.0, math.sqrt(power / 10 ** (rng.uniform(*snr_db) / 10)), size=y.shape)
            y = y + noise.astype(np.float32)
        peak = float(np.max(np.abs(y))) or 1.0
        if peak > 1.0:
            y = y / peak
        y = np.clip(y, -1.0, 1.0).astype(np.float32)
        if words is not None:
            words = [{**w, "start": w["start"] / factor, "end": w["end"] / factor} for w in words]
        out.append(u.with_waveform(y, sample_rate, id=f"{u.id}:aug{seed}", duration=len(y) / sample_rate, words=words))
    return out


def build_training_set(data_root, *, n_mixed: int = 2000, n_speech_commands: int = 500, n_tts: int = 500,
                       augment_copies: int = 1, seed: int = 0, tts_dir=None) -> list[Utterance]:
    """Connected digits of training speakers only, plus augmented copies.

    * ``n_mixed`` utterances drawn from all FSDD and Speech Commands training speakers
      (speakers weighted by their number of clips, so mostly FSDD);
    * ``n_speech_commands`` more from Speech Commands training speakers only (many speakers,
      few clips each: the variety the five FSDD training speakers lack);
    * ``n_tts`` from offline TTS voices (``tts_dir`` is where the clips are cached; skipped
      when ``None`` or when no engine is installed);
    * ``augment_copies`` randomised copies of all of the above (:func:`augment`).

    Example:
        >>> train = build_training_set("../shared/data", n_mixed=300, augment_copies=0)  # doctest: +SKIP
    """
    records = [r for r in digit_records(data_root) if r.split == "train"]
    parts = [connected_digits(records, n_mixed, seed=seed * 10 + 1, split="train")]
    sc = [r for r in records if r.source == "speech_commands"]
    if n_speech_commands and sc:
        parts.append(connected_digits(sc, n_speech_commands, seed=seed * 10 + 3, split="train"))
    if n_tts and tts_dir is not None:
        tts = tts_digit_records(tts_dir, seed=seed)
        if tts:
            parts.append(connected_digits(tts, n_tts, seed=seed * 10 + 4, split="train"))
    base = [u for part in parts for u in part]
    return base + [u for k in range(augment_copies) for u in augment(base, seed=seed * 10 + 11 + k)]


def build_dev_set(data_root, n: int = 300, *, seed: int = 0, tts_dir=None) -> list[Utterance]:
    """Tuning set from *training* speakers (new digit strings, fully augmented): never test speakers.

    A third each from FSDD, Speech Commands and TTS voices (when available), all with noise and
    speed perturbation, so that it is harder than the training data.

    Example:
        >>> dev = build_dev_set("../shared/data", 60)  # doctest: +SKIP
    """
    records = [r for r in digit_records(data_root) if r.split == "train"]
    pools = [[r for r in records if r.source == "fsdd"], [r for r in records if r.source == "speech_commands"]]
    if tts_dir is not None:
        pools.append(tts_digit_records(tts_dir, seed=seed))
    pools = [p for p in pools if p]
    parts = [connected_digits(p, n // len(pools) + (k < n % len(pools)), seed=seed * 10 + 7 + k, split="train")
             for k, p in enumerate(pools)]
    return augment([u for part in parts for u in part], seed=seed * 10 + 97, p_speed=1.0, p_noise=1.0)


def load_utterances(records, sample_rate: int = 16000) -> list[Utterance]:
    """Copies of single-file records (e.g. isolated digits) holding their audio at ``sample_rate``.

    Example:
        >>> isolated = load_utterances(digit_records("../shared/data")[:5])  # doctest: +SKIP
    """
    out = []
    for r in records:
        w, rate = load_audio(r.path, sample_rate=None)
        out.append(r.with_waveform(resample(w, rate, sample_rate), sample_rate))
    return out


__all__ = ["FSDD_TEST_SPEAKERS", "SPEECH_COMMANDS_TEST_FRACTION", "SPLIT_SEED", "TTS_VOICES", "augment",
           "build_dev_set", "build_training_set", "connected_digits", "digit_records", "load_utterances",
           "tts_digit_records"]
