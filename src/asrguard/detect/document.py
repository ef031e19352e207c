"""The file format every detector family saves in: ``detector.json`` + ``detector.safetensors``.

The JSON document holds settings, the threshold and the recogniser it was fitted for, with a
SHA-256 checksum of itself and of the arrays file; :func:`read_document` refuses a folder whose
checksums do not match (tampered or corrupt), and :func:`check_recognizer` a recogniser other
than the recorded one. No pickle anywhere.

Example:
    >>> folder = write_document("det", {"format": FORMAT, "version": FORMAT_VERSION}, {})  # doctest: +SKIP
    >>> read_document(folder)[1]["format"]                                                # doctest: +SKIP
    'asrguard-detector'
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping

import numpy as np
from safetensors.numpy import load_file, save_file

from ..errors import ModelFileError
from ..fileio import atomic_write, atomic_write_text

FORMAT = "asrguard-detector"
FORMAT_VERSION = 1
DOCUMENT_NAME = "detector.json"
ARRAYS_NAME = "detector.safetensors"


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _document_checksum(document: Mapping) -> str:
    body = {k: v for k, v in document.items() if k != "checksum_sha256"}
    return _sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def read_document(directory: str | os.PathLike) -> tuple[Path, dict, dict[str, np.ndarray]]:
    """``(folder, document, arrays)`` of a saved detector, both checksums verified."""
    directory = Path(directory)
    if directory.is_file() and directory.name == DOCUMENT_NAME:
        directory = directory.parent
    doc_path, arrays_path = directory / DOCUMENT_NAME, directory / ARRAYS_NAME
    if not directory.is_dir() or not doc_path.is_file() or not arrays_path.is_file():
        raise ModelFileError(f"{directory}: expected a detector folder with {DOCUMENT_NAME} and {ARRAYS_NAME}; "
                             "fit one with `asrguard fit-detector` or detector.fit(...).save(folder)")
    try:
        document = json.loads(doc_path.read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{doc_path}: not valid JSON ({exc}); the file is corrupt") from None
    if document.get("format") != FORMAT:
        raise ModelFileError(f"{doc_path}: not an asrguard detector file (format {document.get('format')!r})")
    if document.get("version") != FORMAT_VERSION:
        raise ModelFileError(f"{doc_path}: detector format version {document.get('version')!r} is not supported "
                             f"(expected {FORMAT_VERSION}); refit the detector")
    if document.get("checksum_sha256") != _document_checksum(document):
        raise ModelFileError(f"{doc_path}: checksum mismatch; the detector file was modified or is corrupt. "
                             "Refit it or restore the original")
    raw = arrays_path.read_bytes()
    if _sha256_bytes(raw) != document.get("arrays_sha256"):
        raise ModelFileError(f"{arrays_path}: checksum mismatch; the detector file was modified or is corrupt. "
                             "Refit it or restore the original")
    try:
        arrays = load_file(str(arrays_path))
    except Exception as exc:  # noqa: BLE001 - the error type differs across safetensors versions
        raise ModelFileError(f"{arrays_path}: not a readable safetensors file ({exc})") from None
    return directory, document, arrays


def write_document(directory: str | os.PathLike, document: Mapping, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``detector.safetensors`` and ``document`` with both checksums to
    ``detector.json``, atomically; every detector family saves through this."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ModelFileError(f"{directory}: exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    arrays_path = directory / ARRAYS_NAME
    atomic_write(arrays_path, lambda tmp: save_file(dict(arrays), tmp))
    document = {**document, "arrays_sha256": _sha256_bytes(arrays_path.read_bytes())}
    document["checksum_sha256"] = _document_checksum(document)
    atomic_write_text(directory / DOCUMENT_NAME, json.dumps(document, indent=2, sort_keys=True) + "\n")
    return directory


def check_recognizer(doc_path: Path, expected: Mapping, recognizer, actual: str | None,
                     allow_unverified: bool) -> None:
    """Refuse ``recognizer`` unless ``actual`` (its checksum or fingerprint) is the one recorded in
    ``expected`` when the detector was fitted, and it runs at the recorded sample rate."""
    stored = expected.get("checksum_sha256")
    if stored is None or actual is None:
        if not allow_unverified:
            raise ModelFileError(
                f"{doc_path}: cannot verify that the recogniser matches the detector (checksum "
                f"{'not recorded' if stored is None else 'of the given recogniser unknown'}); load the recogniser "
                "from disk, or pass allow_unverified=True")
    elif stored != actual:
        raise ModelFileError(
            f"{doc_path}: this detector was fitted for recogniser {stored[:12]}… but the given recogniser is "
            f"{actual[:12]}…; use the model it was fitted with (--model / --recognizer) or fit a detector for this "
            "recogniser (asrguard fit-detector --recognizer ...)")
    if int(expected.get("sample_rate", recognizer.sample_rate)) != recognizer.sample_rate:
        raise ModelFileError(f"{doc_path}: fitted at {expected.get('sample_rate')} Hz but the recogniser runs at "
                             f"{recognizer.sample_rate} Hz")


__all__ = ["ARRAYS_NAME", "DOCUMENT_NAME", "FORMAT", "FORMAT_VERSION", "check_recognizer", "read_document",
           "write_document"]
