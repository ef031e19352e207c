"""The service's limits in one place (``asrguard serve`` options map onto these fields).

Memory is bounded by construction: at most ``max_inflight`` requests are admitted, each body
holds at most ``max_bytes``, at most ``workers`` uploads are decoded at once, each into at
most ``max_samples`` float32 samples (checked from the header before decoding), and a scoring
batch pads at most ``batch_seconds`` of audio (or one upload of any admitted length).

Example:
    >>> Limits(max_seconds=10).decoded_sample_limit
    960000
"""

from __future__ import annotations

from dataclasses import dataclass

from ..audio import MIN_SPEECH_SECONDS, SILENCE_DBFS
from ..errors import ConfigError

#: Largest accepted upload (bytes): 10 MiB is over a minute of 16 kHz 32-bit float audio.
MAX_BYTES = 10 * 1024 * 1024
#: Longest accepted audio: the recognisers here are trained on clips of a few seconds.
MAX_SECONDS = 30.0
#: Highest accepted sample rate: speech needs no more, and decoding cost grows with it.
MAX_SAMPLE_RATE = 48_000
#: Bytes a multipart body may carry besides the file (boundaries, part headers).
MULTIPART_OVERHEAD = 16 * 1024


@dataclass(frozen=True)
class Limits:
    """Request limits. ``max_samples`` (channels × frames) defaults to ``max_seconds`` of stereo
    at ``max_sample_rate``; ``body_timeout`` is the time allowed to receive a whole body.
    A scoring batch holds at most ``batch_size`` uploads and ``batch_seconds`` of padded audio,
    and its first upload waits at most ``batch_wait_ms`` for company (``batch_size=1``: none)."""

    max_bytes: int = MAX_BYTES
    max_seconds: float = MAX_SECONDS
    max_sample_rate: int = MAX_SAMPLE_RATE
    max_samples: int | None = None
    max_inflight: int = 16
    workers: int = 2
    body_timeout: float = 20.0
    min_seconds: float = MIN_SPEECH_SECONDS
    silence_dbfs: float = SILENCE_DBFS
    max_part_header_bytes: int = 1024
    batch_size: int = 8
    batch_wait_ms: float = 20.0
    batch_seconds: float = 16.0

    def __post_init__(self):
        if not float(self.batch_wait_ms) >= 0:
            raise ConfigError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms!r}")
        for name in ("max_bytes", "max_inflight", "workers", "max_sample_rate", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("max_seconds", "body_timeout", "batch_seconds"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")

    @property
    def decoded_sample_limit(self) -> int:
        """Most samples (all channels) one upload may decode into."""
        if self.max_samples is not None:
            return int(self.max_samples)
        return int(self.max_seconds * self.max_sample_rate * 2)

    @property
    def max_body_bytes(self) -> int:
        """Most bytes one request body may carry: the file plus multipart framing."""
        return self.max_bytes + MULTIPART_OVERHEAD


__all__ = ["Limits", "MAX_BYTES", "MAX_SAMPLE_RATE", "MAX_SECONDS", "MULTIPART_OVERHEAD"]
