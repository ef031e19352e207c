"""Readers that turn a corpus folder, in its published layout, into :class:`Utterance` lists.

Readers only look at file names, metadata and audio headers (``soundfile.info``); no
audio is decoded, so reading a few thousand files takes well under a second. Results
are sorted by id, so the same folder always gives the same list.

Example:
    >>> from asrguard.data import CORPUS_READERS
    >>> records = CORPUS_READERS["fsdd"]("../shared/data/fsdd")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from pathlib import Path
from typing import Callable

import soundfile as sf

from ..errors import AudioFileError, DataError
from ..text import DIGIT_WORDS, normalize_transcript
from .records import Utterance

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
SPEECH_COMMANDS_CORE_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
URBANSOUND8K_CLASSES = (
    "air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling",
    "engine_idling", "gun_shot", "jackhammer", "siren", "street_music",
)

_FSDD_NAME = re.compile(r"^(\d)_([^_]+)_(\d+)$")


def _require_dir(root, corpus: str, hint: str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: {corpus} folder not found; {hint}")
    return root


def _audio_header(path: Path) -> tuple[int, float]:
    """(sample rate, duration in seconds) from the file header only."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # noqa: BLE001 - soundfile raises several types
        raise AudioFileError(
            f"{path}: not a readable audio file ({str(exc).strip()[:120]}); re-download or delete it"
        ) from None
    return int(info.samplerate), float(info.frames) / float(info.samplerate)


def _utterance(path: Path, *, id: str, transcript: str, speaker: str, source: str) -> Utterance:
    rate, duration = _audio_header(path)
    return Utterance(
        id=id,
        path=str(path),
        transcript=normalize_transcript(transcript),
        speaker=speaker,
        sample_rate=rate,
        duration=duration,
        source=source,
    )


def is_audio_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith(".")


def read_fsdd(root) -> list[Utterance]:
    """Free Spoken Digit Dataset: ``root/recordings/{digit}_{speaker}_{index}.wav``.

    ``root`` may also be the ``recordings`` folder itself. The transcript is the digit
    word and the speaker the middle part of the name.

    Example:
        >>> records = read_fsdd("../shared/data/fsdd")  # doctest: +SKIP
        >>> records[0].transcript, records[0].speaker  # doctest: +SKIP
        ('zero', 'george')
    """
    root = _require_dir(root, "FSDD", "download it with asrguard.data.download_fsdd(dest)")
    folder = root / "recordings" if (root / "recordings").is_dir() else root
    out, skipped = [], 0
    for path in sorted(folder.iterdir()):
        if not is_audio_file(path):
            continue
        match = _FSDD_NAME.match(path.stem)
        if match is None:
            skipped += 1
            continue
        digit, speaker, _ = match.groups()
        out.append(
            _utterance(path, id=f"fsdd:{path.stem}", transcript=DIGIT_WORDS[int(digit)], speaker=speaker, source="fsdd")
        )
    if skipped:
        log.warning("%s: skipped %d file(s) not named {digit}_{speaker}_{index}", folder, skipped)
    if not out:
        raise DataError(
            f"{folder}: no FSDD recordings named {{digit}}_{{speaker}}_{{index}}.wav; "
            "point root at the folder holding 'recordings/'"
        )
    return sorted(out, key=lambda r: r.id)


def _speech_commands_speaker(stem: str, strip_word: bool) -> str:
    head = stem.split("_nohash_")[0] if "_nohash_" in stem else stem
    if strip_word and "_" in head:
        # _unknown_ names are '{word}_{speaker}_nohash_{n}'; words never contain '_'.
        head = head.split("_", 1)[1]
    return head


def read_speech_commands(root, include_silence: bool = False) -> list[Utterance]:
    """Google Speech Commands (v0.01/v0.02, test set or full): one folder per word.

    Files are ``{word}/{speaker}_nohash_{n}.wav|flac``; in ``_unknown_`` they are
    ``{word}_{speaker}_nohash_{n}`` and the word comes from the name. ``_silence_`` clips
    (transcript ``""``, one pseudo-speaker per clip) are read only with
    ``include_silence=True``; ``_background_noise_`` (long noise recordings) is never read.

    Example:
        >>> records = read_speech_commands("../shared/data/speech_commands_v0.02_test")  # doctest: +SKIP
    """
    root = _require_dir(
        root, "Speech Commands", "download the test set with asrguard.data.download_speech_commands(dest)"
    )
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        name = folder.name
        if name == "_background_noise_" or (name == "_silence_" and not include_silence):
            continue
        for path in sorted(folder.iterdir()):
            if not is_audio_file(path):
                continue
            stem = path.stem
            if name == "_silence_":
                # Silence clips have no speaker; one pseudo-speaker per clip keeps
                # split_by_speaker from putting all of them on one side.
                transcript, speaker = "", f"silence-{stem}"
            elif name == "_unknown_":
                transcript = stem.split("_", 1)[0]
                speaker = _speech_commands_speaker(stem, strip_word=True)
            else:
                transcript, speaker = name, _speech_commands_speaker(stem, strip_word=False)
            out.append(
                _utterance(
                    path, id=f"speech_commands:{name}/{stem}", transcript=transcript,
                    speaker=speaker, source="speech_commands",
                )
            )
    if not out:
        raise DataError(
            f"{root}: no Speech Commands clips found; expected word folders such as 'yes/' "
            "holding {speaker}_nohash_{n}.wav"
        )
    return sorted(out, key=lambda r: r.id)


def _find_urbansound_audio(root: Path, fold: str, name: str) -> Path | None:
    stem = Path(name).stem
    for folder in (root / "audio" / f"fold{fold}", root / "audio", root / f"fold{fold}", root):
        for candidate in (name, *(stem + s for s in (".wav", ".flac"))):
            path = folder / candidate
            if path.is_file():
                return path
    return None


def read_urbansound8k(root) -> list[Utterance]:
    """UrbanSound8K (non-speech; transcript ``""``): metadata CSV plus ``audio/fold{n}/``.

    Both layouts are accepted: ``root/metadata.csv`` (our subset, FLAC) and the official
    ``root/metadata/UrbanSound8K.csv`` with ``root/audio/fold{n}/*.wav``. The id is
    ``urbansound8k:{class}:{file stem}`` and the speaker is the Freesound id ``fsID``, so
    slices of one recording stay on one side of a split. Rows whose audio is missing
    are skipped with a warning (handy for a partial download).

    Example:
        >>> records = read_urbansound8k("../shared/data/urbansound8k_subset")  # doctest: +SKIP
        >>> records[0].id.split(":")[1]  # doctest: +SKIP
        'air_conditioner'
    """
    root = _require_dir(root, "UrbanSound8K", "see asrguard.data.download_urbansound8k for how to get it")
    meta = next((p for p in (root / "metadata.csv", root / "metadata" / "UrbanSound8K.csv") if p.is_file()), None)
    if meta is None:
        raise DataError(
            f"{root}: no metadata.csv or metadata/UrbanSound8K.csv; point root at the extracted UrbanSound8K folder"
        )
    with open(meta, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    needed = {"slice_file_name", "fold", "class"}
    if not rows or not needed <= set(rows[0]):
        found = sorted(rows[0]) if rows else "no rows"
        raise DataError(f"{meta}: expected columns {sorted(needed)} (plus fsID), found {found}")
    out, missing = [], []
    for row in rows:
        name, fold, label = row["slice_file_name"].strip(), row["fold"].strip(), row["class"].strip()
        path = _find_urbansound_audio(root, fold, name)
        if path is None:
            missing.append(name)
            continue
        speaker = (row.get("fsID") or "").strip() or Path(name).stem.split("-")[0]
        rate, duration = _audio_header(path)
        out.append(
            Utterance(
                id=f"urbansound8k:{label}:{Path(name).stem}", path=str(path), transcript="", speaker=speaker,
                sample_rate=rate, duration=duration, source="urbansound8k",
            )
        )
    if missing:
        log.warning(
            "%s: %d of %d listed clips have no audio file (e.g. %s); skipped", meta, len(missing), len(rows), missing[0]
        )
    if not out:
        raise DataError(f"{root}: none of the {len(rows)} clips in {meta.name} were found under audio/fold*/")
    return sorted(out, key=lambda r: r.id)


def read_librispeech(root) -> list[Utterance]:
    """LibriSpeech: ``{speaker}/{chapter}/{speaker}-{chapter}.trans.txt`` with ``ID.flac`` beside it.

    ``root`` may be a subset folder (``test-clean``) or any folder above it.

    Example:
        >>> records = read_librispeech("LibriSpeech/test-clean")  # doctest: +SKIP
    """
    root = _require_dir(root, "LibriSpeech", "download a subset with asrguard.data.download_librispeech(dest)")
    out = []
    for trans in sorted(root.rglob("*.trans.txt")):
        for line_no, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.strip().split(" ", 1)
            utt_id, text = parts[0], parts[1] if len(parts) > 1 else ""
            audio = trans.parent / f"{utt_id}.flac"
            if not audio.is_file():
                raise DataError(
                    f"{trans}: line {line_no} names {utt_id} but {audio.name} is missing; re-extract the archive"
                )
            speaker = utt_id.split("-")[0]
            out.append(
                _utterance(audio, id=f"librispeech:{utt_id}", transcript=text, speaker=speaker, source="librispeech")
            )
    if not out:
        raise DataError(f"{root}: no *.trans.txt files; point root at e.g. LibriSpeech/test-clean")
    return sorted(out, key=lambda r: r.id)


def read_common_voice(root, tsv: str = "test.tsv") -> list[Utterance]:
    """Mozilla Common Voice: ``root/{tsv}`` (client_id, path, sentence) and ``root/clips/``.

    Common Voice ships MP3; reading it needs libsndfile >= 1.1 (soundfile >= 0.12).

    Example:
        >>> records = read_common_voice("cv-corpus-17.0/en", tsv="dev.tsv")  # doctest: +SKIP
    """
    root = _require_dir(root, "Common Voice", "extract a Common Voice release and point root at its language folder")
    table = root / tsv
    if not table.is_file():
        raise DataError(f"{table}: not found; pass tsv= one of the .tsv files in {root}")
    with open(table, newline="", encoding="utf-8") as fh:
        # Sentences contain bare quotes; QUOTE_NONE keeps csv from swallowing lines.
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    needed = {"client_id", "path", "sentence"}
    if rows and not needed <= set(rows[0]):
        raise DataError(f"{table}: expected columns {sorted(needed)}, found {sorted(rows[0])}")
    out = []
    for row in rows:
        audio = root / "clips" / row["path"]
        if not audio.is_file():
            raise DataError(f"{audio}: listed in {table.name} but missing; re-extract the release")
        out.append(
            _utterance(
                audio, id=f"common_voice:{Path(row['path']).stem}", transcript=row["sentence"] or "",
                speaker=row["client_id"], source="common_voice",
            )
        )
    if not out:
        raise DataError(f"{table}: has no rows")
    return sorted(out, key=lambda r: r.id)


#: Subset of each ``english_speech`` folder; speechocean762 splits into adults and children by tag.
ENGLISH_SPEECH_SUBSETS = {
    "librispeech_test_other": "librispeech-test-other", "librispeech_test_clean": "librispeech-test-clean",
    "commonvoice_en_cv61_sample": "common-voice", "commonvoice_en_early": "common-voice",
    "commonvoice_en_kaggle": "common-voice", "speechocean762": "speechocean762", "an4_test": "an4",
    "ljspeech_sample": "ljspeech", "pocketsphinx_librivox": "librivox",
}


def english_speech_subset(folder: str, tags) -> str:
    """The subset an ``english_speech`` item is reported under.

    Example:
        >>> english_speech_subset("speechocean762", ["non-native", "child"])
        'speechocean762-children'
    """
    subset = ENGLISH_SPEECH_SUBSETS.get(folder, folder)
    if subset == "speechocean762":
        return "speechocean762-children" if "child" in tags else "speechocean762-adults"
    return subset


def read_english_speech(root) -> list[Utterance]:
    """The real English speech set (``manifest.jsonl`` with 16 kHz FLAC), transcripts as the source gives them.

    ``source`` holds the reporting subset (:func:`english_speech_subset`). Transcripts keep their
    case and punctuation: normalise reference and hypothesis alike before scoring
    (:func:`asrguard.text.normalize_english`).

    Example:
        >>> records = read_english_speech("../shared/data/english_speech")   # doctest: +SKIP
        >>> records[0].source                                               # doctest: +SKIP
        'an4'
    """
    root = _require_dir(root, "english_speech", "it is ../shared/data/english_speech in this project")
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        raise DataError(f"{manifest}: not found")
    out = []
    with open(manifest, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                folder = row["id"].split("/")[0]
                out.append(Utterance(
                    id=f"english_speech:{row['id']}", path=str(root / row["path"]), transcript=row["transcript"],
                    speaker=f"{folder}:{row.get('speaker') or row['id']}", sample_rate=16000,
                    duration=float(row["duration_s"]), source=english_speech_subset(folder, row.get("tags", []))))
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{manifest}:{number}: bad row ({exc})") from None
    if not out:
        raise DataError(f"{manifest}: has no rows")
    return sorted(out, key=lambda r: r.id)


def read_audio_folder(root, csv_path=None) -> list[Utterance]:
    """Any folder of audio described by a CSV with columns ``path,transcript[,speaker][,id]``.

    ``csv_path`` defaults to ``root/metadata.csv`` (or the only ``*.csv`` in ``root``).
    Relative paths in the CSV are relative to ``root``. A missing speaker becomes
    ``"unknown"``.

    Example:
        >>> records = read_audio_folder("my_recordings")  # doctest: +SKIP
    """
    root = _require_dir(root, "audio", "check the path")
    if csv_path is None:
        candidates = [root / "metadata.csv"] if (root / "metadata.csv").is_file() else sorted(root.glob("*.csv"))
        if len(candidates) != 1:
            raise DataError(
                f"{root}: found {len(candidates)} CSV files; pass csv_path= the one with path,transcript columns"
            )
        csv_path = candidates[0]
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: CSV not found")
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"path", "transcript"} <= set(rows[0]):
        raise DataError(
            f"{csv_path}: needs a header with at least 'path,transcript' (optional 'speaker', 'id') and one row"
        )
    out = []
    for line_no, row in enumerate(rows, 2):
        rel = (row["path"] or "").strip()
        audio = Path(rel) if os.path.isabs(rel) else root / rel
        if not rel or not audio.is_file():
            raise DataError(f"{csv_path}: line {line_no}: audio file {audio} not found; fix the path column")
        utt_id = (row.get("id") or "").strip() or Path(rel).with_suffix("").as_posix()
        out.append(
            _utterance(
                audio, id=f"audio_folder:{utt_id}", transcript=row["transcript"] or "",
                speaker=(row.get("speaker") or "").strip() or "unknown", source="audio_folder",
            )
        )
    return sorted(out, key=lambda r: r.id)


#: Corpus name -> reader; every reader takes the corpus root as its first argument.
CORPUS_READERS: dict[str, Callable[..., list[Utterance]]] = {
    "fsdd": read_fsdd,
    "speech_commands": read_speech_commands,
    "urbansound8k": read_urbansound8k,
    "librispeech": read_librispeech,
    "english_speech": read_english_speech,
    "common_voice": read_common_voice,
    "audio_folder": read_audio_folder,
}
