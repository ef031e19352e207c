"""Offline text-to-speech corpus builder (Debian ``flite`` and ``espeak-ng``).

Synthetic speech gives many voices saying exactly the command phrases an attacker
would target ("okay google unlock phone"), which no free recorded corpus has. Both
engines are optional: absent ones are skipped.

Example:
    >>> from asrguard.data import build_tts_corpus, default_sentences
    >>> records = build_tts_corpus(default_sentences(n=200), "cache/tts")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile as sf

from ..audio import load_audio, save_audio, validate_sample_rate
from ..errors import AudioFileError, ConfigError, DataError
from ..text import DIGIT_WORDS, normalize_transcript
from .records import Utterance, append_record, read_manifest, write_manifest

log = logging.getLogger(__name__)

ENGINES = ("flite", "espeak-ng")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
ESPEAK_VOICES = ("en-us", "en-us+m3", "en-us+f3", "en+f2", "en-gb", "en-gb+m2")
#: Speaking rates (words per minute) drawn for each item.
RATE_RANGE = (130, 190)
#: flite has no words-per-minute switch; its natural pace is about this, and
#: ``duration_stretch`` scales around it.
_FLITE_NATURAL_WPM = 170.0
_TIMEOUT_S = 60.0


def available_tts_engines() -> list[str]:
    """Names of the installed engines, from ``("flite", "espeak-ng")``.

    Example:
        >>> set(available_tts_engines()) <= {"flite", "espeak-ng"}
        True
    """
    return [engine for engine in ENGINES if shutil.which(engine)]


def default_voices(engines: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """All ``(engine, voice)`` pairs of the given (default: installed) engines."""
    engines = available_tts_engines() if engines is None else list(engines)
    table = {"flite": FLITE_VOICES, "espeak-ng": ESPEAK_VOICES}
    return [(engine, voice) for engine in engines for voice in table.get(engine, ())]


def synthesize(
    text: str,
    engine: str,
    voice: str,
    out_path: str | os.PathLike,
    rate: int | None = None,
    *,
    sample_rate: int | None = None,
) -> Path:
    """Speak ``text`` with one engine and voice into a mono WAV at ``out_path``.

    ``rate`` is in words per minute (espeak-ng ``-s``; for flite it becomes a duration
    stretch). With ``sample_rate`` the file is resampled, else the engine's own rate is
    kept (flite 8 or 16 kHz, espeak-ng 22.05 kHz). The write is atomic.

    Example:
        >>> synthesize("call mom", "espeak-ng", "en-us", "call_mom.wav", rate=160)  # doctest: +SKIP
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown TTS engine {engine!r}; choose one of {', '.join(ENGINES)}")
    exe = shutil.which(engine)
    if exe is None:
        raise DataError(f"TTS engine {engine!r} is not installed; on Debian/Ubuntu: apt-get install {engine}")
    if not text or not text.strip():
        raise ConfigError("synthesize needs non-empty text")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".wav")
    os.close(fd)
    try:
        if engine == "flite":
            cmd = [exe, "-voice", voice]
            if rate is not None:
                cmd += ["--setf", f"duration_stretch={_FLITE_NATURAL_WPM / float(rate):.3f}"]
            # -t takes the text as an option value, so text starting with '-' is safe.
            cmd += ["-t", text, "-o", tmp]
            stdin = None
        else:
            cmd = [exe, "-v", voice, "-w", tmp]
            if rate is not None:
                cmd += ["-s", str(int(rate))]
            # Text on stdin, never argv: it cannot be mistaken for an option.
            cmd += ["--stdin"]
            stdin = text
        try:
            result = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise DataError(f"{engine} took over {_TIMEOUT_S:.0f} s on {text[:60]!r}; text too long?") from None
        if result.returncode != 0 or Path(tmp).stat().st_size <= 44:
            raise DataError(
                f"{engine} -voice {voice} failed for {out_path.name} (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[:200] or 'no audio written'}; check the voice name "
                f"({'flite -lv' if engine == 'flite' else 'espeak-ng --voices=en'} lists them)"
            )
        if sample_rate is not None:
            try:
                waveform, rate_read = load_audio(tmp, sample_rate=validate_sample_rate(sample_rate))
            except AudioFileError as exc:
                raise DataError(f"{engine} wrote unreadable audio for {out_path.name}: {exc}") from None
            save_audio(tmp, waveform, rate_read, subtype="PCM_16")
        os.replace(tmp, out_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out_path


def _item_id(engine: str, voice: str, text: str) -> str:
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
    return f"tts:{engine}:{voice}:{digest}"


def _file_name(item_id: str) -> str:
    return item_id.replace("tts:", "", 1).replace(":", "_").replace("+", "-") + ".wav"


def _plan(
    sentences: Sequence[str], voices: Sequence[tuple[str, str]], seed: int, per_sentence: int
) -> list[dict]:
    items, seen = [], set()
    for j, text in enumerate(sentences):
        rng = np.random.default_rng([seed, j])
        picks = rng.permutation(len(voices))[: min(per_sentence, len(voices))]
        for k in picks:
            engine, voice = voices[int(k)]
            rate = int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1))
            item_id = _item_id(engine, voice, text)
            if item_id in seen:
                continue
            seen.add(item_id)
            items.append({"id": item_id, "text": text, "engine": engine, "voice": voice, "rate": rate})
    return items


def build_tts_corpus(
    sentences: Iterable[str],
    out_dir: str | os.PathLike,
    seed: int = 0,
    voices: Sequence[tuple[str, str]] | None = None,
    per_sentence: int = 2,
    sample_rate: int = 16000,
    max_workers: int = 2,
) -> list[Utterance]:
    """Speak every sentence with ``per_sentence`` random voices; write WAVs + ``manifest.jsonl``.

    ``voices`` is a list of ``(engine, voice)`` pairs (default: every voice of every
    installed engine); pairs whose engine is missing are skipped, and with no engine at
    all a warning is logged and ``[]`` returned. Voice and rate (130-190 wpm) come from
    ``(seed, sentence index)``. Speaker ids are ``"tts:{engine}:{voice}"``. Resumable:
    items already in the manifest with their WAV present are not synthesised again; the
    manifest is then rewritten to hold exactly the returned records, in plan order.

    Example:
        >>> records = build_tts_corpus(["call mom", "open the door"], "cache/tts", per_sentence=3)  # doctest: +SKIP
    """
    sample_rate = validate_sample_rate(sample_rate)
    if per_sentence < 1:
        raise ConfigError(f"per_sentence must be >= 1, got {per_sentence}")
    installed = set(available_tts_engines())
    voices = default_voices(installed) if voices is None else [tuple(v) for v in voices]
    unknown = sorted({e for e, _ in voices} - set(ENGINES))
    if unknown:
        raise ConfigError(f"unknown TTS engine(s) {unknown}; choose from {', '.join(ENGINES)}")
    usable = [v for v in voices if v[0] in installed]
    if len(usable) < len(voices):
        log.warning("skipping voices of engines that are not installed: %s", sorted({e for e, _ in voices} - installed))
    if not usable:
        log.warning("no TTS engine installed (need flite or espeak-ng); no TTS corpus built")
        return []
    # Normalised, de-duplicated text: the transcript must be what the recogniser can emit.
    texts = list(dict.fromkeys(t for t in (normalize_transcript(s) for s in sentences) if t))
    items = _plan(texts, usable, seed, per_sentence)

    out_dir = Path(out_dir)
    wav_dir = out_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "manifest.jsonl"
    done: dict[str, Utterance] = {}
    if manifest.is_file():
        for r in read_manifest(manifest, allow_partial_tail=True):
            if r.path and Path(r.path).is_file():
                done[r.id] = r
    todo = [item for item in items if item["id"] not in done]
    if todo:
        log.info("synthesising %d of %d TTS items into %s", len(todo), len(items), out_dir)

    def work(item: dict) -> Utterance:
        path = synthesize(
            item["text"], item["engine"], item["voice"], wav_dir / _file_name(item["id"]),
            rate=item["rate"], sample_rate=sample_rate,
        )
        frames = _frames(path)
        return Utterance(
            id=item["id"], path=str(path.resolve()), transcript=item["text"],
            speaker=f"tts:{item['engine']}:{item['voice']}", sample_rate=sample_rate,
            duration=frames / sample_rate, source="tts",
        )

    # Threads suffice: the work happens in the engine subprocesses.
    with ThreadPoolExecutor(max_workers=max(1, int(max_workers))) as pool:
        futures = [pool.submit(work, item) for item in todo]
        try:
            for future in as_completed(futures):
                utt = future.result()
                row = utt.to_dict()
                row["path"] = os.path.relpath(utt.path, out_dir)
                append_record(manifest, row)  # on disk now, so an interrupted run resumes here
                done[utt.id] = utt
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    out = [done[item["id"]] for item in items]
    write_manifest(manifest, out, relative_paths=True)
    return out


def _frames(path: Path) -> int:
    return int(sf.info(str(path)).frames)


# Word lists for default_sentences. Speech Commands v0.02 vocabulary first.
SPEECH_COMMANDS_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SPEECH_COMMANDS_AUXILIARY = (
    *DIGIT_WORDS, "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "backward", "forward", "follow", "learn", "visual",
)
COMMAND_PHRASES = (
    "okay google", "unlock phone", "delete files", "okay google unlock phone and delete files",
    "turn off the lights", "call mom", "open the door", "send a message", "play music",
    "set an alarm for seven", "what is the weather",
    # These make sure every letter and the apostrophe occur.
    "what's the weather like today", "play some jazz quietly", "don't open the box", "it's six o'clock",
)
WAKE_WORDS = ("okay google", "hey siri", "alexa", "hey computer")
VERBS = (
    "open", "close", "lock", "unlock", "delete", "send", "call", "play", "stop",
    "turn on", "turn off", "show me", "find",
)
OBJECTS = (
    "the door", "the garage", "my phone", "all files", "the lights", "the camera", "the front door",
    "a message", "mom", "dad", "the music", "the window", "my email", "the video", "the browser",
    "the bank account", "the quiz", "the jukebox",
)
SUFFIXES = ("", "", "", "now", "please", "right now", "quickly", "for me", "at seven", "and delete files")


def default_sentences(seed: int = 0, n: int = 400) -> list[str]:
    """A varied, deterministic list of ``n`` short command sentences (normalised text).

    It starts with the Speech Commands words and auxiliary words and the fixed command
    phrases (together they use every letter a-z and the apostrophe), then adds digit
    strings of 1-7 digits and sentences built from wake words, verbs and objects. With
    ``n`` below the size of the fixed part the list is simply cut.

    Example:
        >>> default_sentences(n=3)
        ['yes', 'no', 'up']
    """
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    out = list(dict.fromkeys([*SPEECH_COMMANDS_WORDS, *SPEECH_COMMANDS_AUXILIARY, *COMMAND_PHRASES]))
    seen = set(out)
    attempts = 0
    while len(out) < n and attempts < 50 * n:
        attempts += 1
        kind = rng.random()
        if kind < 0.3:
            digits = rng.integers(0, 10, size=int(rng.integers(1, 8)))
            text = " ".join(DIGIT_WORDS[int(d)] for d in digits)
        else:
            verb, obj = VERBS[rng.integers(len(VERBS))], OBJECTS[rng.integers(len(OBJECTS))]
            parts = [verb, obj, SUFFIXES[rng.integers(len(SUFFIXES))]]
            if kind > 0.7:
                parts.insert(0, WAKE_WORDS[rng.integers(len(WAKE_WORDS))])
            text = normalize_transcript(" ".join(parts))
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out[:n]
