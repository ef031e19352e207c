"""asrguard: detect adversarial audio from a speech recogniser's own uncertainty.

The names below are the public API; ``docs/guide.md`` walks through them. Everything but the
exceptions is imported on first use, so ``import asrguard`` (and ``asrguard --help``) stays
instant: eagerly, torch and scikit-learn would add about two seconds.

Example:
    >>> import asrguard
    >>> recognizer = asrguard.load_recognizer("ctc")
    >>> audio, rate = asrguard.load_audio(asrguard.EXAMPLE_AUDIO, recognizer.sample_rate)
    >>> recognizer.transcribe([audio])
    ['nine one one']
    >>> asrguard.require(recognizer, "transcribe", "loss", "stochastic", user="my attack")
"""

import importlib
from typing import TYPE_CHECKING

from .errors import (AsrguardError, AudioFileError, ConfigError, DataError, InvalidAudioError,
                     MissingCapabilityError, ModelFileError)

__version__ = "0.1.0"

_ERRORS = ["AsrguardError", "AudioFileError", "ConfigError", "DataError", "InvalidAudioError",
           "MissingCapabilityError", "ModelFileError"]

#: public name -> the module that defines it, imported when the name is first used
_LAZY = {
    # recognisers and the capability interface
    "load_recognizer": ".asr.registry",
    "AudioBatch": ".asr.base", "Realizations": ".asr.base", "Recognizer": ".asr.base", "require": ".asr.base",
    # audio in and out
    "load_audio": ".audio", "save_audio": ".audio", "validate_waveform": ".audio",
    # detection
    "load_detector": ".defaults", "EXAMPLE_AUDIO": ".defaults",
    "Detector": ".detect.detector", "make_classifier": ".detect.classifiers",
    "FeatureExtractor": ".uncertainty.features", "FeatureTable": ".uncertainty.features",
    # attacks
    "CWAttack": ".attacks.cw", "CWConfig": ".attacks.cw", "AttackResult": ".attacks.base",
}

__all__ = sorted(_ERRORS + list(_LAZY) + ["__version__"])

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports these on demand
    from .asr.base import AudioBatch, Realizations, Recognizer, require
    from .asr.registry import load_recognizer
    from .attacks.base import AttackResult
    from .attacks.cw import CWAttack, CWConfig
    from .audio import load_audio, save_audio, validate_waveform
    from .defaults import EXAMPLE_AUDIO, load_detector
    from .detect.classifiers import make_classifier
    from .detect.detector import Detector
    from .uncertainty.features import FeatureExtractor, FeatureTable


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
