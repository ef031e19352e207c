"""Audio in one convention: mono float32 in [-1, 1] at an explicit sample rate.

Every public entry point of asrguard passes its audio through :func:`validate_waveform`
(arrays) or :func:`load_audio` (files), so errors are raised here, with a message that
names the input and says what to do, rather than deep inside torch or soundfile.
"""

from __future__ import annotations

import math
import os
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from .errors import AudioFileError, AudioLimitError, InvalidAudioError, NoSpeechError
from .fileio import atomic_write

DEFAULT_SAMPLE_RATE = 16_000
#: Longest input accepted by default. Recognisers here are trained on utterances of a
#: few seconds; ten minutes in one pass would exhaust memory in the BiLSTM.
MAX_SECONDS = 120.0
MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 384_000
#: Shortest input :func:`check_speech` accepts: a tenth of a second holds no word.
MIN_SPEECH_SECONDS = 0.1
#: RMS level (dBFS) below which :func:`check_speech` calls audio silent.
SILENCE_DBFS = -60.0


def validate_waveform(
    waveform,
    sample_rate: int,
    *,
    name: str = "audio",
    max_seconds: float | None = MAX_SECONDS,
    allow_silent: bool = True,
) -> np.ndarray:
    """Check one waveform and return it as a 1-D float32 numpy array.

    Accepts a numpy array or a torch tensor of shape ``(n,)`` or ``(1, n)`` / ``(n, 1)``.
    Integer PCM (int16 / int32) is rescaled to [-1, 1]; float input must already be there.

    Example:
        >>> validate_waveform(np.zeros(16000), 16000).dtype
        dtype('float32')
    """
    validate_sample_rate(sample_rate, name=name)
    try:
        import torch  # keeps asrguard --help fast: the CLI imports this module at startup

        if isinstance(waveform, torch.Tensor):
            waveform = waveform.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    if not isinstance(waveform, np.ndarray):
        try:
            waveform = np.asarray(waveform)
        except Exception as exc:  # noqa: BLE001 - anything unconvertible is bad input
            raise InvalidAudioError(f"{name}: cannot be read as an array ({exc})") from None
    if waveform.dtype == object or not (
        np.issubdtype(waveform.dtype, np.floating) or np.issubdtype(waveform.dtype, np.integer)
    ):
        raise InvalidAudioError(f"{name}: expected numeric samples, got dtype {waveform.dtype}")
    if waveform.ndim == 2 and 1 in waveform.shape:
        waveform = waveform.reshape(-1)
    if waveform.ndim != 1:
        raise InvalidAudioError(
            f"{name}: expected mono audio of shape (n_samples,), got shape {tuple(waveform.shape)}; "
            "mix channels down first with asrguard.audio.to_mono(x)"
        )
    if waveform.size == 0:
        raise InvalidAudioError(f"{name}: has zero samples")
    if np.issubdtype(waveform.dtype, np.integer):
        scale = float(2 ** (8 * waveform.dtype.itemsize - 1))
        waveform = waveform.astype(np.float64) / scale
    waveform = waveform.astype(np.float32, copy=False)
    if not np.all(np.isfinite(waveform)):
        n_bad = int(np.count_nonzero(~np.isfinite(waveform)))
        raise InvalidAudioError(f"{name}: contains {n_bad} NaN or infinite samples")
    peak = float(np.max(np.abs(waveform)))
    if peak > 1.0 + 1e-4:
        raise InvalidAudioError(
            f"{name}: peak amplitude {peak:.4g} is outside [-1, 1]; float audio must be scaled to "
            "[-1, 1] (int16 samples: divide by 32768)"
        )
    if not allow_silent and peak == 0.0:
        raise InvalidAudioError(f"{name}: is digital silence (all samples are zero)")
    if max_seconds is not None and waveform.size > max_seconds * sample_rate:
        raise InvalidAudioError(
            f"{name}: is {waveform.size / sample_rate:.1f} s long, over the limit of "
            f"{max_seconds:g} s; split it into shorter segments or raise max_seconds"
        )
    return np.clip(waveform, -1.0, 1.0)


def validate_sample_rate(sample_rate, *, name: str = "audio") -> int:
    """Return ``sample_rate`` as an int, or raise if it is not a plausible audio rate."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        if isinstance(sample_rate, float) and sample_rate.is_integer():
            sample_rate = int(sample_rate)
        else:
            raise InvalidAudioError(f"{name}: sample rate must be an integer in Hz, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidAudioError(
            f"{name}: sample rate {sample_rate} Hz is outside the supported "
            f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    return int(sample_rate)


def to_mono(waveform: np.ndarray) -> np.ndarray:
    """Average the channels of a ``(n_samples, n_channels)`` array (soundfile's layout)."""
    waveform = np.asarray(waveform)
    if waveform.ndim == 1:
        return waveform
    if waveform.ndim != 2:
        raise InvalidAudioError(f"cannot mix down audio of shape {waveform.shape}")
    channel_axis = 1 if waveform.shape[1] <= waveform.shape[0] else 0
    return waveform.mean(axis=channel_axis)


def resample(waveform: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy ``resample_poly``) between any two integer rates.

    Example:
        >>> resample(np.zeros(8000, dtype=np.float32), 8000, 16000).shape
        (16000,)
    """
    orig_rate = validate_sample_rate(orig_rate, name="resample input")
    target_rate = validate_sample_rate(target_rate, name="resample target")
    if orig_rate == target_rate:
        return np.asarray(waveform, dtype=np.float32)
    ratio = Fraction(target_rate, orig_rate)
    out = resample_poly(np.asarray(waveform, dtype=np.float64), ratio.numerator, ratio.denominator)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = DEFAULT_SAMPLE_RATE,
    *,
    mono: bool = True,
    max_seconds: float | None = MAX_SECONDS,
) -> tuple[np.ndarray, int]:
    """Read WAV / FLAC / OGG with soundfile; return ``(waveform, rate)``.

    Multi-channel files are averaged to mono (``mono=True``) or refused. The file is
    resampled to ``sample_rate`` unless that is ``None``.

    Example:
        >>> x, sr = load_audio("speech.wav")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioFileError(f"{path}: file is empty (0 bytes)")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # noqa: BLE001 - soundfile raises several types
        raise AudioFileError(
            f"{path}: not a readable audio file ({short_reason(exc)}); supported: WAV, FLAC, OGG"
        ) from None
    if max_seconds is not None and info.frames > max_seconds * info.samplerate:
        raise InvalidAudioError(
            f"{path}: is {info.frames / info.samplerate:.1f} s long, over the limit of "
            f"{max_seconds:g} s; split it into shorter segments or raise max_seconds"
        )
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001
        raise AudioFileError(f"{path}: audio data is corrupt ({short_reason(exc)})") from None
    if data.shape[0] == 0:
        raise InvalidAudioError(f"{path}: contains no samples")
    if data.shape[1] > 1:
        if not mono:
            raise InvalidAudioError(f"{path}: has {data.shape[1]} channels; expected mono")
        data = data.mean(axis=1, keepdims=True)
    waveform = validate_waveform(data[:, 0], rate, name=str(path), max_seconds=None)
    if sample_rate is not None and rate != sample_rate:
        waveform = resample(waveform, rate, sample_rate)
        rate = sample_rate
    return waveform, int(rate)


def save_audio(path: str | os.PathLike, waveform, sample_rate: int, *, subtype: str | None = None) -> Path:
    """Write mono audio atomically (temp file, then rename). Format follows the suffix.

    ``subtype`` defaults to 32-bit float for WAV, so that small adversarial perturbations
    survive the round trip, and 16-bit PCM for FLAC.
    """
    path = Path(path)
    waveform = validate_waveform(waveform, sample_rate, name=str(path), max_seconds=None)
    suffix = path.suffix.lower()
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(suffix)
    if fmt is None:
        raise AudioFileError(f"{path}: unsupported suffix {suffix!r}; use .wav or .flac")
    if subtype is None:
        subtype = {"WAV": "FLOAT", "FLAC": "PCM_16", "OGG": "VORBIS"}[fmt]
    return atomic_write(path, lambda tmp: sf.write(tmp, waveform, sample_rate, format=fmt, subtype=subtype),
                        suffix=suffix)


def db(waveform) -> float:
    """Peak level ``20·log10(max|x|)`` in dB (``-inf`` for silence).

    Example:
        >>> round(db(np.array([0.5, -0.1])), 2)
        -6.02
    """
    peak = float(np.max(np.abs(np.asarray(waveform, dtype=np.float64))))
    return 20.0 * math.log10(peak) if peak > 0 else float("-inf")


def db_relative(delta, reference) -> float:
    """Distortion of ``delta`` relative to ``reference``: ``dB(delta) - dB(reference)``."""
    return db(delta) - db(reference)


def snr_db(signal, noise) -> float:
    """Signal-to-noise ratio ``10·log10(Σ signal² / Σ noise²)`` in dB.

    Example:
        >>> round(snr_db(np.ones(10), 0.1 * np.ones(10)), 1)
        20.0
    """
    signal_energy = float(np.sum(np.square(np.asarray(signal, dtype=np.float64))))
    noise_energy = float(np.sum(np.square(np.asarray(noise, dtype=np.float64))))
    if noise_energy == 0.0:
        return float("inf")
    if signal_energy == 0.0:
        return float("-inf")
    return 10.0 * math.log10(signal_energy / noise_energy)


def check_audio_header(info, *, name: str = "audio", max_seconds: float | None = MAX_SECONDS,
                       max_samples: int | None = None, max_sample_rate: int = MAX_SAMPLE_RATE) -> None:
    """Refuse audio from its header alone, before a single sample is decoded.

    ``info`` is anything with ``frames``, ``channels`` and ``samplerate`` (``soundfile.info(f)``
    or an open ``soundfile.SoundFile``). Decoding costs ``channels × frames`` samples, so that
    product is bounded (``max_samples``), not the frame count alone: a 50 KB file with 255
    channels would otherwise decode into gigabytes. Raises :class:`InvalidAudioError` for a rate
    outside ``MIN_SAMPLE_RATE..max_sample_rate`` or an empty file, and
    :class:`~asrguard.errors.AudioLimitError` (status 413) for audio over ``max_seconds`` or
    ``max_samples``.

    Example:
        >>> from types import SimpleNamespace
        >>> check_audio_header(SimpleNamespace(frames=32000, channels=2, samplerate=16000), max_samples=64000)
        >>> check_audio_header(SimpleNamespace(frames=32000, channels=255, samplerate=16000), max_samples=64000)
        Traceback (most recent call last):
        ...
        asrguard.errors.AudioLimitError: audio: decodes to 8160000 samples (255 channels × 32000 frames), over the limit of 64000
    """
    rate, channels, frames = int(info.samplerate), int(info.channels), int(info.frames)
    if not MIN_SAMPLE_RATE <= rate <= max_sample_rate:
        raise InvalidAudioError(f"{name}: sample rate {rate} Hz is outside the supported "
                                f"{MIN_SAMPLE_RATE}-{max_sample_rate} Hz")
    if channels < 1:
        raise InvalidAudioError(f"{name}: header declares {channels} channels")
    if frames <= 0:
        raise InvalidAudioError(f"{name}: contains no samples")
    if max_seconds is not None and frames > max_seconds * rate:
        raise AudioLimitError(f"{name}: is {frames / rate:.1f} s long, over the limit of {max_seconds:g} s; "
                              "split it into shorter segments")
    if max_samples is not None and channels * frames > max_samples:
        raise AudioLimitError(f"{name}: decodes to {channels * frames} samples ({channels} channels × {frames} "
                              f"frames), over the limit of {max_samples}")


def check_speech(waveform: np.ndarray, sample_rate: int, *, name: str = "audio",
                 min_seconds: float = MIN_SPEECH_SECONDS, silence_dbfs: float = SILENCE_DBFS) -> None:
    """Raise :class:`~asrguard.errors.NoSpeechError` for audio too short or too quiet to hold speech.

    A detector's score means nothing on such input (the recogniser hears noise in silence),
    so callers refuse it instead of scoring it. The level is the RMS in dBFS.

    Example:
        >>> check_speech(0.1 * np.ones(16000, dtype=np.float32), 16000)
        >>> check_speech(np.zeros(16000, dtype=np.float32), 16000)
        Traceback (most recent call last):
        ...
        asrguard.errors.NoSpeechError: audio: is silent (RMS level -inf dBFS, below -60 dBFS); no speech to score
    """
    waveform = np.asarray(waveform)
    if waveform.size < min_seconds * sample_rate:
        raise NoSpeechError(f"{name}: is {waveform.size / sample_rate:.3g} s long, too short to hold speech "
                            f"(at least {min_seconds:g} s); no speech to score")
    rms = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))
    level = 20.0 * math.log10(rms) if rms > 0 else float("-inf")
    if level < silence_dbfs:
        raise NoSpeechError(f"{name}: is silent (RMS level {level:.0f} dBFS, below {silence_dbfs:g} dBFS); "
                            "no speech to score")


def short_reason(exc: Exception) -> str:
    """First line of a library error, without soundfile's in-memory file repr."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # soundfile names in-memory files by their repr; a user only needs the reason
    text = re.sub(r"^Error opening <[^>]*>: ", "", text)
    return text[:160]
