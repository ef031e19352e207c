"""Reading an upload while it streams, and decoding it within the limits.

:func:`read_upload` takes the audio from a request body as it arrives: either
``multipart/form-data`` with exactly one part, named ``file`` (what ``curl -F file=@x.wav``
and a browser's ``FormData`` send), or a raw ``audio/*`` / ``application/octet-stream`` body.
A form may carry one more part, a text field ``detector`` naming the detector to use (at most
64 bytes). The multipart parser is fed chunk by chunk (never the whole body first), and the file part is
cut at ``max_bytes``; the byte count and read deadline of the whole body are enforced below
it by :class:`~asrguard.service.gate.Gate`.

:func:`decode_upload` (run in the bounded decode pool) checks the header with
:func:`asrguard.audio.check_audio_header` before any sample is decoded, reads at most the
decoded-sample limit whatever the header claims, mixes to mono, validates, resamples and
refuses silence (:func:`asrguard.audio.check_speech`). Nothing is written to disk.

Example:
    >>> upload = await read_upload(request, Limits())                          # doctest: +SKIP
    >>> waveform = decode_upload(upload.data, upload.filename, 16000)          # doctest: +SKIP
"""

from __future__ import annotations

import io
import unicodedata
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from starlette.requests import ClientDisconnect
try:  # python-multipart >= 0.0.13 names its module python_multipart
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # pragma: no cover - older releases
    from multipart.exceptions import MultipartParseError
    from multipart.multipart import MultipartParser, parse_options_header

from ..audio import check_audio_header, check_speech, resample, short_reason, validate_waveform
from ..errors import AudioFileError, AudioLimitError, InvalidAudioError
from .errors import PayloadTooLargeError, UnsupportedMediaTypeError, UploadError
from .limits import MAX_SECONDS, MULTIPART_OVERHEAD, Limits

#: Media types accepted for the audio (the content is sniffed by soundfile anyway).
ACCEPTED_TYPES = ("audio/", "application/octet-stream")
FIELD = "file"
#: The optional form field naming a detector (``asrguard.service.catalog``), and its longest value.
DETECTOR_FIELD = "detector"
MAX_DETECTOR_BYTES = 64
HOW = "send multipart/form-data with the audio in one field named 'file' (curl -F file=@speech.wav URL)"


@dataclass
class Upload:
    """One uploaded file, in memory."""

    filename: str
    content_type: str
    data: bytes
    detector: str | None = None


def safe_filename(raw: str | bytes | None, default: str = "upload") -> str:
    """The last path component of a client's file name, printable and at most 100 characters.

    The name is only echoed back and logged, never used as a path; this keeps it from
    smuggling directories, control characters or megabytes into either.

    Example:
        >>> safe_filename("../../etc/passwd.wav"), safe_filename("C:\\\\x\\\\a\\nb.wav"), safe_filename("")
        ('passwd.wav', 'ab.wav', 'upload')
    """
    if raw is None:
        return default
    name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().lstrip(".")
    return name[:100] or default


def _accepted(content_type: str) -> bool:
    return not content_type or content_type.lower().startswith(ACCEPTED_TYPES)


class _OneFilePart:
    """Callbacks for python-multipart's streaming parser that keep one part named ``file`` (and
    at most one short text part named ``detector``)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.parts = 0
        self.headers: dict[bytes, bytes] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._header_bytes = 0
        self.data = bytearray()
        self.detector = bytearray()
        self.filename = "upload"
        self.content_type = ""
        self.finished = False
        self.files = 0
        self.detector_given = False
        self._in_file = False

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.limits.max_part_header_bytes:
            raise UploadError(f"part headers are over {self.limits.max_part_header_bytes} bytes (a huge field or "
                              f"file name?); {HOW}")

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > 2:
            raise UploadError(f"more than one part in the form besides '{DETECTOR_FIELD}'; {HOW}")
        self.headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if name == DETECTOR_FIELD.encode() and b"filename" not in options:  # a text field, not a file
            if self.detector_given:
                raise UploadError(f"more than one part named '{DETECTOR_FIELD}' in the form; {HOW}")
            self.detector_given, self._in_file = True, False
            return
        if name != FIELD.encode():
            shown = "no name" if name is None else repr(name.decode("utf-8", "replace")[:40])
            raise UploadError(f"unexpected form field ({shown}); {HOW}, and optionally the detector's name in "
                              f"'{DETECTOR_FIELD}'")
        self.files += 1
        if self.files > 1:
            raise UploadError(f"more than one part named '{FIELD}' in the form; {HOW}")
        self._in_file = True
        self.filename = safe_filename(options.get(b"filename"))
        self.content_type = self.headers.get(b"content-type", b"").decode("latin-1").strip()
        if not _accepted(self.content_type):
            raise UnsupportedMediaTypeError(f"{self.filename}: media type {self.content_type[:60]!r} is not audio; "
                                            "upload WAV, FLAC or OGG")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            self.detector += data[start:end]
            if len(self.detector) > MAX_DETECTOR_BYTES:
                raise UploadError(f"the '{DETECTOR_FIELD}' field is over {MAX_DETECTOR_BYTES} bytes; send a "
                                  "detector's name as /healthz lists it")
            return
        self.data += data[start:end]
        if len(self.data) > self.limits.max_bytes:
            raise PayloadTooLargeError(f"{self.filename}: upload is over the limit of {self.limits.max_bytes} bytes")

    def on_end(self) -> None:
        self.finished = True

    def callbacks(self) -> dict:
        names = ("on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
                 "on_part_data", "on_end")
        return {name: getattr(self, name) for name in names}


def _parser(boundary: bytes, part: _OneFilePart, limits: Limits) -> MultipartParser:
    try:
        # the parser's own header cap is looser, so that ours (with its clearer message) fires first
        return MultipartParser(boundary, part.callbacks(),
                               max_header_size=limits.max_part_header_bytes + MULTIPART_OVERHEAD)
    except TypeError:  # pragma: no cover - releases without a header cap: ours is the only one
        return MultipartParser(boundary, part.callbacks())


async def read_upload(request, limits: Limits) -> Upload:
    """The one audio file of a request, read as the body streams in (see the module docstring)."""
    content_type = request.headers.get("content-type", "")
    media, options = parse_options_header(content_type)
    media = media.decode("latin-1").lower()
    if media == "multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary or len(boundary) > 200:
            raise UploadError(f"multipart body without a valid boundary; {HOW}")
        part = _OneFilePart(limits)
        parser = _parser(boundary, part, limits)
        try:
            async for chunk in request.stream():
                if chunk:
                    parser.write(chunk)
            parser.finalize()
        except MultipartParseError as exc:
            raise UploadError(f"malformed multipart body ({short_reason(exc)}); {HOW}") from None
        except ClientDisconnect:
            raise UploadError("the client disconnected before sending its whole body") from None
        if part.files == 0:
            raise UploadError(f"no file in the request; {HOW}")
        if not part.finished:
            raise UploadError(f"the multipart body ended before its closing boundary; {HOW}")
        detector = bytes(part.detector).decode("utf-8", "replace").strip() if part.detector_given else None
        return Upload(part.filename, part.content_type, bytes(part.data), detector)
    if media.startswith(ACCEPTED_TYPES):
        name = safe_filename(request.query_params.get("filename"))
        data = bytearray()
        try:
            async for chunk in request.stream():
                data += chunk
                if len(data) > limits.max_bytes:
                    raise PayloadTooLargeError(f"{name}: upload is over the limit of {limits.max_bytes} bytes")
        except ClientDisconnect:
            raise UploadError("the client disconnected before sending its whole body") from None
        return Upload(name, media, bytes(data))
    if not media:
        raise UploadError(f"no file in the request; {HOW}")
    shown = media[:60]
    raise UnsupportedMediaTypeError(f"request body of type {shown!r} is not an upload; {HOW}")


def decode_upload(data: bytes, filename: str, sample_rate: int, *, max_seconds: float = MAX_SECONDS,
                  limits: Limits | None = None) -> np.ndarray:
    """Decode uploaded bytes into a validated mono waveform at ``sample_rate``.

    Raises :class:`~asrguard.errors.AudioFileError` (unreadable), ``InvalidAudioError``
    (empty, NaN, rate out of range), ``AudioLimitError`` (over the duration or decoded-sample
    limit, from the header) or ``NoSpeechError`` (too short or silent), each with its status.
    """
    limits = limits or Limits(max_seconds=max_seconds)
    if not data:
        raise InvalidAudioError(f"{filename}: file is empty (0 bytes)")
    try:
        stream = sf.SoundFile(io.BytesIO(data))  # parses the header only
    except Exception as exc:  # noqa: BLE001 - soundfile raises several types
        raise AudioFileError(f"{filename}: not a readable audio file ({short_reason(exc)}); "
                             "supported: WAV, FLAC, OGG") from None
    with stream:
        check_audio_header(stream, name=filename, max_seconds=limits.max_seconds,
                           max_samples=limits.decoded_sample_limit, max_sample_rate=limits.max_sample_rate)
        rate = int(stream.samplerate)
        # never decode more than the limit allows, whatever the header claims
        cap = limits.decoded_sample_limit // stream.channels + 1
        try:
            samples = stream.read(frames=min(int(stream.frames), cap), dtype="float32", always_2d=True)
        except Exception as exc:  # noqa: BLE001
            raise AudioFileError(f"{filename}: audio data is corrupt ({short_reason(exc)})") from None
    if samples.shape[0] == 0:
        raise InvalidAudioError(f"{filename}: contains no samples")
    if samples.size > limits.decoded_sample_limit or samples.shape[0] > limits.max_seconds * rate:
        raise AudioLimitError(f"{filename}: holds more audio than its header declares, over the limit")
    mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1)
    del samples
    waveform = validate_waveform(mono, rate, name=filename, max_seconds=None)
    if rate != sample_rate:
        waveform = resample(waveform, rate, sample_rate)
    check_speech(waveform, sample_rate, name=filename, min_seconds=limits.min_seconds,
                 silence_dbfs=limits.silence_dbfs)
    return waveform


__all__ = ["ACCEPTED_TYPES", "DETECTOR_FIELD", "Upload", "decode_upload", "read_upload", "safe_filename"]
