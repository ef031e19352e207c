"""Errors of the HTTP layer, each with the status it is answered with.

Audio errors come from :mod:`asrguard.errors` (``InvalidAudioError`` 400, ``AudioLimitError``
413, ``NoSpeechError`` 422, ...). These are the request-level ones: a body too large or too
slow, a wrong media type, a missing key, too many requests. The service answers every
:class:`~asrguard.errors.AsrguardError` with ``exc.status`` and ``{"error": str(exc), "code":
exc.code}``; ``headers`` (e.g. ``Retry-After``) are added to the response.

Example:
    >>> exc = OverloadedError("busy", retry_after=2)
    >>> exc.status, exc.code, exc.headers
    (503, 'overloaded', {'Retry-After': '2'})
"""

from __future__ import annotations

from ..errors import AsrguardError


class UploadError(AsrguardError):
    """A request the service refuses. ``status`` (default 400) is its HTTP status."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, status: int | None = None, *, headers: dict | None = None):
        super().__init__(message)
        if status is not None:
            self.status = int(status)
        self.headers = dict(headers or {})


class PayloadTooLargeError(UploadError):
    """The body is over the byte limit (declared or counted while it streams)."""

    status = 413
    code = "too_large"


class UnsupportedMediaTypeError(UploadError):
    """The body or the file part is not audio."""

    status = 415
    code = "unsupported_media_type"


class BodyTimeoutError(UploadError):
    """The client sent its body too slowly."""

    status = 408
    code = "body_timeout"


class UnauthorizedError(UploadError):
    """No API key, or a wrong one."""

    status = 401
    code = "unauthorized"

    def __init__(self, message: str):
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="asrguard"'})


class UnknownDetectorError(UploadError):
    """The request names a detector this server does not offer (``?detector=`` or the form field)."""

    status = 400
    code = "unknown_detector"


class _RetryLater(UploadError):
    def __init__(self, message: str, *, retry_after: float = 1):
        super().__init__(message, headers={"Retry-After": str(max(1, int(-(-retry_after // 1))))})


class RateLimitedError(_RetryLater):
    """This client sent more requests than ``--rate-limit`` allows."""

    status = 429
    code = "rate_limited"


class OverloadedError(_RetryLater):
    """Too many requests in flight: retry after ``Retry-After`` seconds."""

    status = 503
    code = "overloaded"


__all__ = ["BodyTimeoutError", "OverloadedError", "PayloadTooLargeError", "RateLimitedError", "UnauthorizedError",
           "UnknownDetectorError", "UnsupportedMediaTypeError", "UploadError"]
