"""One exception family for everything asrguard raises at its boundaries."""


class AsrguardError(Exception):
    """Base class: every error asrguard raises on purpose derives from this."""


class InvalidAudioError(AsrguardError, ValueError):
    """Audio that cannot be used: empty, non-finite, multi-channel, wrong scale, too long."""


class AudioFileError(AsrguardError, OSError):
    """An audio file that is missing, unreadable or corrupt."""


class ModelFileError(AsrguardError):
    """A checkpoint or detector file that is missing, tampered with or mismatched."""


class ConfigError(AsrguardError, ValueError):
    """A configuration value that is out of range or inconsistent."""


class DataError(AsrguardError):
    """A corpus folder or manifest that is missing or laid out unexpectedly."""


class MissingCapabilityError(ConfigError):
    """A recogniser that lacks a capability an attack or feature needs (see ``asr.base``)."""
