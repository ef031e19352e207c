"""Read a CTranslate2 ``model.bin`` into named NumPy arrays, without CTranslate2 itself.

The layout (binary version 6, little-endian): ``u32`` version, the spec name and a ``u32``
spec revision, ``u32`` variable count, then per variable its name, ``u8`` rank, ``u32`` dims,
``u8`` dtype and ``u32`` byte count followed by the raw data; then ``u32`` alias count and
``(alias, target)`` name pairs. Strings are ``u16`` lengths that count a trailing NUL.

Example:
    >>> model = read_ctranslate2("model.bin")                 # doctest: +SKIP
    >>> model.spec, model.variables["encoder/conv1/weight"].shape   # doctest: +SKIP
    ('WhisperSpec', (384, 80, 3))
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

from ...errors import ModelFileError

#: CTranslate2's DataType enum, in order.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_SUPPORTED_VERSIONS = range(5, 7)


@dataclass
class CTranslate2Model:
    """A CTranslate2 model file's contents: spec name, revision, variables and aliases."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]

    def get(self, name: str) -> np.ndarray:
        """A variable by name, following aliases (e.g. a projection tied to the embedding)."""
        return self.variables[self.aliases.get(name, name)]


class _Reader:
    def __init__(self, data: bytes, path: str):
        self.data, self.offset, self.path = data, 0, path

    def unpack(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.offset + size > len(self.data):
            raise ModelFileError(f"{self.path}: truncated CTranslate2 file at byte {self.offset}")
        value = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return value[0] if len(value) == 1 else value

    def string(self) -> str:
        raw = self.raw(self.unpack("H"))  # bounds-checked: a cut inside a name is a truncation
        try:
            return raw.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(f"{self.path}: corrupt CTranslate2 file (a name before byte {self.offset} "
                                 "is not UTF-8)") from None

    def raw(self, n: int) -> bytes:
        if self.offset + n > len(self.data):
            raise ModelFileError(f"{self.path}: truncated CTranslate2 file at byte {self.offset}")
        chunk = self.data[self.offset:self.offset + n]
        self.offset += n
        return chunk


def read_ctranslate2(path: str | os.PathLike) -> CTranslate2Model:
    """Parse ``path``; raises :class:`~asrguard.errors.ModelFileError` on anything unexpected."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            reader = _Reader(handle.read(), path)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the CTranslate2 model ({exc})") from exc
    version = reader.unpack("I")
    if version not in _SUPPORTED_VERSIONS:
        raise ModelFileError(f"{path}: CTranslate2 binary version {version} is not supported (5-6 are)")
    spec, revision = reader.string(), reader.unpack("I")
    variables = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        shape = tuple(reader.unpack("I") for _ in range(reader.unpack("B")))
        dtype_id, n_bytes = reader.unpack("B"), reader.unpack("I")
        if dtype_id not in _DTYPES:
            raise ModelFileError(f"{path}: variable {name} has unsupported dtype id {dtype_id}")
        array = np.frombuffer(reader.raw(n_bytes), dtype=_DTYPES[dtype_id])
        if array.size != int(np.prod(shape)):
            raise ModelFileError(f"{path}: variable {name} holds {array.size} values for shape {shape}")
        variables[name] = array.reshape(shape)
    aliases = {}
    for _ in range(reader.unpack("I")):
        alias = reader.string()
        aliases[alias] = reader.string()
    if reader.offset != len(reader.data):
        raise ModelFileError(f"{path}: {len(reader.data) - reader.offset} unexpected trailing bytes")
    return CTranslate2Model(spec, revision, variables, aliases)
