"""One exception family for everything asrguard raises at its boundaries.

Every class carries ``status``, the HTTP status the service (:mod:`asrguard.service`) answers
with, and ``code``, a short machine-readable name for clients. The service reads these
attributes; it never chooses a status from an error's message.

Example:
    >>> InvalidAudioError("x.wav: has zero samples").status
    400
    >>> AudioLimitError("x.wav: is 31.0 s long").status, NoSpeechError("x.wav: silent").code
    (413, 'no_speech')
"""


class AsrguardError(Exception):
    """Base class: every error asrguard raises on purpose derives from this."""

    #: HTTP status the service answers with (500: the fault is on the server's side).
    status: int = 500
    #: Short machine-readable name of the error, for clients.
    code: str = "internal_error"


class InvalidAudioError(AsrguardError, ValueError):
    """Audio that cannot be used: empty, non-finite, multi-channel, wrong scale, too long."""

    status = 400
    code = "invalid_audio"


class AudioLimitError(InvalidAudioError):
    """Audio over a size limit (duration, decoded samples), refused before it is decoded where possible."""

    status = 413
    code = "audio_too_large"


class NoSpeechError(InvalidAudioError):
    """Audio too short or too quiet to hold speech: refused instead of scored."""

    status = 422
    code = "no_speech"


class AudioFileError(AsrguardError, OSError):
    """An audio file that is missing, unreadable or corrupt."""

    status = 400
    code = "unreadable_audio"


class ModelFileError(AsrguardError):
    """A checkpoint or detector file that is missing, tampered with or mismatched."""

    code = "model_file"


class ConfigError(AsrguardError, ValueError):
    """A configuration value that is out of range or inconsistent."""

    code = "config"


class DataError(AsrguardError):
    """A corpus folder or manifest that is missing or laid out unexpectedly."""

    code = "data"


class MissingCapabilityError(ConfigError):
    """A recogniser that lacks a capability an attack or feature needs (see ``asr.base``)."""

    code = "missing_capability"


class IncompleteRunError(AsrguardError):
    """A long run that stopped with items unfinished (a worker died); what finished is saved."""

    status = 503
    code = "incomplete_run"
