"""Corpora as lists of :class:`Utterance` records: readers, manifests, splits and builders.

Example:
    >>> from asrguard.data import read_fsdd, split_by_speaker, write_manifest
    >>> records = split_by_speaker(read_fsdd("../shared/data/fsdd"), test_fraction=0.2)  # doctest: +SKIP
    >>> write_manifest("cache/fsdd.jsonl", records)  # doctest: +SKIP
"""

from .corpora import (
    CORPUS_READERS,
    read_audio_folder,
    read_common_voice,
    read_english_speech,
    read_fsdd,
    read_librispeech,
    read_speech_commands,
    read_urbansound8k,
)
from .digits import (
    ClipCache,
    build_connected_digits,
    generate_connected_digit_audio,
    make_connected_digit,
    trim_silence,
)
from .download import (
    download_file,
    download_fsdd,
    download_librispeech,
    download_speech_commands,
    download_urbansound8k,
    extract_archive,
)
from .records import (
    Utterance,
    append_record,
    read_jsonl,
    read_manifest,
    split_by_speaker,
    write_manifest,
)
from .tts import available_tts_engines, build_tts_corpus, default_sentences, default_voices, synthesize

__all__ = [
    "read_english_speech",
    "CORPUS_READERS",
    "ClipCache",
    "Utterance",
    "append_record",
    "available_tts_engines",
    "build_connected_digits",
    "build_tts_corpus",
    "default_sentences",
    "default_voices",
    "download_file",
    "download_fsdd",
    "download_librispeech",
    "download_speech_commands",
    "download_urbansound8k",
    "extract_archive",
    "generate_connected_digit_audio",
    "make_connected_digit",
    "read_audio_folder",
    "read_common_voice",
    "read_fsdd",
    "read_jsonl",
    "read_librispeech",
    "read_manifest",
    "read_speech_commands",
    "read_urbansound8k",
    "split_by_speaker",
    "synthesize",
    "trim_silence",
    "write_manifest",
]
