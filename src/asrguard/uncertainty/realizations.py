"""Dropout realisations through the :class:`~asrguard.asr.base.Recognizer` interface.

A thin layer: it validates the audio, fixes the defaults of Jayashankar et al. (2020)
(``I = 50`` realisations at a defence dropout rate ``p = 0.1``) and always passes a seed,
so the same audio gives the same realisations and therefore the same detector score.

Example:
    >>> r = draw_realizations(recognizer, waveform)          # doctest: +SKIP
    >>> len(r.transcripts), tuple(r.log_probs.shape)[0]      # doctest: +SKIP
    (50, 50)
"""

from __future__ import annotations

from typing import Sequence

from ..asr.base import MASK_SCHEMES, BatchedRealizations, Realizations, Recognizer
from ..audio import validate_waveform
from ..errors import ConfigError

#: Number of dropout realisations I (paper: 50).
DEFAULT_N = 50
#: Defence dropout rate p (paper: 0.1).
DEFAULT_P = 0.1
DEFAULT_SEED = 0


def check_settings(n: int, p: float, masks: str = "iid") -> None:
    """Raise :class:`ConfigError` unless ``n >= 1``, ``0 < p < 1`` and ``masks`` is a known scheme
    (:data:`~asrguard.asr.base.MASK_SCHEMES`)."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ConfigError(f"number of realisations must be an integer >= 1, got {n!r}")
    if not 0.0 < float(p) < 1.0:
        raise ConfigError(f"defence dropout rate p must be in (0, 1), got {p!r}")
    if masks not in MASK_SCHEMES:
        raise ConfigError(f"masks must be one of {', '.join(MASK_SCHEMES)}, got {masks!r}")


def mask_options(recognizer, masks: str) -> dict:
    """The keyword arguments that ask ``recognizer`` for ``masks``: none for "iid" (every recogniser
    draws independent masks), else ``{"masks": masks}`` if its ``mask_schemes`` has it.

    Example:
        >>> mask_options(object(), "iid")
        {}
        >>> mask_options(object(), "balanced")
        Traceback (most recent call last):
        ...
        asrguard.errors.ConfigError: object draws only iid dropout masks, not 'balanced' ones
    """
    if masks == "iid":
        return {}
    schemes = getattr(recognizer, "mask_schemes", ("iid",))
    if masks not in schemes:
        raise ConfigError(f"{type(recognizer).__name__} draws only {', '.join(schemes)} dropout masks, "
                          f"not {masks!r} ones")
    return {"masks": masks}


def draw_realizations(recognizer: Recognizer, audio, n: int = DEFAULT_N, *, p: float = DEFAULT_P,
                      seed: int = DEFAULT_SEED, name: str = "audio", masks: str = "iid") -> Realizations:
    """``n`` seeded dropout realisations (transcripts + posteriors ``(n, T, C)``) of one waveform.

    ``audio`` is a 1-D array or tensor at ``recognizer.sample_rate`` on the [-1, 1] scale;
    ``masks`` names how the ``n`` masks relate (:func:`mask_options`).
    """
    check_settings(n, p, masks)
    options = mask_options(recognizer, masks)
    waveform = validate_waveform(audio, recognizer.sample_rate, name=name)
    return recognizer.realizations(waveform, int(n), int(seed), p=float(p), **options)


def draw_realizations_batch(recognizer: Recognizer, audios: Sequence, n: int = DEFAULT_N, *, p: float = DEFAULT_P,
                            seed: int = DEFAULT_SEED, names: Sequence[str] | None = None,
                            masks: str = "iid") -> list[Realizations]:
    """:func:`draw_realizations` of several waveforms: one pass where the recogniser has the
    ``batched_realizations`` capability, else one call per waveform. Either way each result
    equals that waveform's own :func:`draw_realizations` (same masks, same transcripts).

    Example:
        >>> drawn = draw_realizations_batch(recognizer, [short, long], n=50)   # doctest: +SKIP
        >>> [r.log_probs.shape[0] for r in drawn]                               # doctest: +SKIP
        [50, 50]
    """
    check_settings(n, p, masks)
    options = mask_options(recognizer, masks)
    if names is not None and len(names) != len(audios):
        raise ConfigError(f"{len(names)} names for {len(audios)} waveforms")
    waveforms = [validate_waveform(a, recognizer.sample_rate, name=names[i] if names else f"audio[{i}]")
                 for i, a in enumerate(audios)]
    if not waveforms:
        return []
    if isinstance(recognizer, BatchedRealizations):
        return recognizer.realizations_batch(waveforms, int(n), int(seed), p=float(p), **options)
    return [recognizer.realizations(w, int(n), int(seed), p=float(p), **options) for w in waveforms]


__all__ = ["DEFAULT_N", "DEFAULT_P", "DEFAULT_SEED", "check_settings", "draw_realizations", "draw_realizations_batch",
           "mask_options"]
