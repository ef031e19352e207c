"""Utterance records, JSONL manifests and speaker-disjoint splits.

A manifest is one JSON object per line, one line per :class:`Utterance`. Paths that are
relative in a manifest are read relative to the manifest's own folder, so a corpus
folder can be moved or copied as a whole.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import ConfigError, DataError
from ..fileio import atomic_write

log = logging.getLogger(__name__)

_REQUIRED = ("id", "path", "transcript", "speaker", "sample_rate", "duration", "source")


@dataclass
class Utterance:
    """One utterance: an audio file (or in-memory clip) with its transcript and who spoke it.

    The project's one record type: manifests, data sets, evaluation sets and attack inputs all
    carry it. ``source`` is the corpus it came from (for ``english_speech``, the reporting
    subset). ``words`` optionally holds word boundaries in seconds,
    ``[{"word": "seven", "start": 0.12, "end": 0.55}, ...]``. ``path`` is ``""`` for audio
    that only exists in memory. ``waveform`` optionally holds the decoded audio (mono float32);
    ``sample_rate`` is then its rate. It is never written to a manifest and takes no part in
    ``==``.

    Example:
        >>> u = Utterance("fsdd:7_theo_0", "7_theo_0.wav", "seven", "theo", 8000, 0.41, "fsdd")
        >>> Utterance.from_dict(u.to_dict()) == u
        True
        >>> clip = Utterance.from_waveform("toy:0", np.zeros(800, np.float32), 16000, "one")
        >>> clip.duration, clip.with_waveform(np.ones(800, np.float32)) == clip, "waveform" in clip.to_dict()
        (0.05, True, False)
    """

    id: str
    path: str
    transcript: str
    speaker: str
    sample_rate: int
    duration: float
    source: str
    split: str = ""
    words: list[dict] | None = field(default=None)
    waveform: np.ndarray | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_waveform(cls, id: str, waveform: np.ndarray, sample_rate: int, transcript: str = "",
                      speaker: str = "", source: str = "memory", *, path: str = "", **extra) -> "Utterance":
        """An utterance built around its audio (``duration`` from the waveform; ``path`` where a file holds it)."""
        return cls(id, path, transcript, speaker, sample_rate, len(waveform) / sample_rate, source,
                   waveform=waveform, **extra)

    def with_waveform(self, waveform: np.ndarray, sample_rate: int | None = None, **changes) -> "Utterance":
        """A copy holding ``waveform`` (at ``sample_rate``, default this record's), other fields as ``changes`` say."""
        rate = self.sample_rate if sample_rate is None else sample_rate
        return dataclasses.replace(self, waveform=waveform, sample_rate=rate, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; ``words`` is left out when there are none, ``waveform`` always."""
        out = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "waveform"}
        if out["words"] is None:
            del out["words"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Utterance":
        """Build from a dict such as one manifest line; unknown keys are ignored.

        Unknown keys are tolerated so that manifests written by a newer version, or
        annotated by hand, still load.
        """
        if not isinstance(data, dict):
            raise DataError(f"expected a JSON object for an utterance, got {type(data).__name__}")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise DataError(f"utterance record lacks the field(s) {', '.join(missing)}: {data!r:.200}")
        words = data.get("words")
        if words is not None:
            if not isinstance(words, list):
                raise DataError(f"utterance {data['id']!r}: 'words' must be a list of objects")
            try:
                words = [
                    {"word": str(w["word"]), "start": float(w["start"]), "end": float(w["end"])} for w in words
                ]
            except (KeyError, TypeError, ValueError):
                raise DataError(
                    f"utterance {data['id']!r}: each entry of 'words' needs 'word', 'start' and 'end'"
                ) from None
        try:
            return cls(
                id=str(data["id"]),
                path=str(data["path"]),
                transcript=str(data["transcript"]),
                speaker=str(data["speaker"]),
                sample_rate=int(data["sample_rate"]),
                duration=float(data["duration"]),
                source=str(data["source"]),
                split=str(data.get("split") or ""),
                words=words,
            )
        except (TypeError, ValueError) as exc:
            raise DataError(f"utterance {data.get('id')!r}: bad field value ({exc})") from None


def _as_dict(record) -> dict[str, Any]:
    if isinstance(record, Utterance):
        return record.to_dict()
    if isinstance(record, dict):
        return record
    raise DataError(f"cannot write {type(record).__name__} to a manifest; pass Utterance objects or dicts")


def write_manifest(path: str | os.PathLike, records: Iterable, *, relative_paths: bool = False) -> Path:
    """Write records (:class:`Utterance` objects or dicts) as JSONL, atomically.

    With ``relative_paths=True`` audio paths inside the manifest's folder are stored
    relative to it, which keeps a generated corpus relocatable.

    Example:
        >>> write_manifest("corpus/manifest.jsonl", records)  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    lines = []
    for record in records:
        row = dict(_as_dict(record))
        if relative_paths and row.get("path"):
            audio = Path(row["path"])
            if audio.is_absolute():
                try:
                    row["path"] = str(audio.resolve().relative_to(base))
                except ValueError:
                    pass  # outside the folder: an absolute path is the only correct choice
        lines.append(json.dumps(row, ensure_ascii=False))
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + ("\n" if lines else ""))
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, write, suffix=".tmp")


def read_jsonl(path: str | os.PathLike, *, allow_partial_tail: bool = False) -> list[dict[str, Any]]:
    """Read a JSONL file into a list of dicts; blank lines are skipped.

    ``allow_partial_tail=True`` drops an unparsable *last* line, which is what a run
    killed in the middle of :func:`append_record` leaves behind.

    Example:
        >>> rows = read_jsonl("runs/results.jsonl", allow_partial_tail=True)  # doctest: +SKIP
    """
    return [row for _, row in _read_numbered(Path(path), allow_partial_tail)]


def _read_numbered(path: Path, allow_partial_tail: bool) -> list[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise DataError(f"{path}: manifest not found; build it first or check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read manifest ({exc})") from None
    lines = text.split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if allow_partial_tail and i == last:
                log.warning("%s: ignoring truncated last line %d (interrupted write)", path, i + 1)
                break
            raise DataError(
                f"{path}: line {i + 1} is not valid JSON ({exc.msg}); fix or delete that line"
            ) from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {i + 1} is not a JSON object; fix or delete that line")
        rows.append((i + 1, row))
    return rows


def read_manifest(
    path: str | os.PathLike, *, resolve_paths: bool = True, allow_partial_tail: bool = False
) -> list[Utterance]:
    """Read a JSONL manifest into :class:`Utterance` objects.

    Relative audio paths are resolved against the manifest's folder unless
    ``resolve_paths=False``.

    Example:
        >>> records = read_manifest("corpus/manifest.jsonl")  # doctest: +SKIP
    """
    path = Path(path)
    base = path.parent.resolve()
    out = []
    for line_no, row in _read_numbered(path, allow_partial_tail):
        try:
            record = Utterance.from_dict(row)
        except DataError as exc:
            raise DataError(f"{path}: line {line_no}: {exc}; fix or delete that line") from None
        if resolve_paths and record.path and not Path(record.path).is_absolute():
            record.path = str(base / record.path)
        out.append(record)
    return out


def append_record(path: str | os.PathLike, record) -> None:
    """Append one record (dict or Utterance) as a JSON line, durably (flush + fsync).

    Meant for resumable runs: each finished item is on disk before the next starts. If
    an earlier run died mid-line, a newline is added first so the new record stays
    parseable.

    Example:
        >>> append_record("runs/results.jsonl", {"id": "a", "score": 0.3})  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(_as_dict(record), ensure_ascii=False) + "\n"
    with open(path, "a+b") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                line = "\n" + line
        fh.write(line.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def _speaker_rank(speaker: str, seed: int) -> str:
    # sha256 rather than hash(): Python salts str hashes per process, which would make
    # the split change from run to run.
    return hashlib.sha256(f"{seed}\x00{speaker}".encode("utf-8")).hexdigest()


def split_by_speaker(
    records: Iterable[Utterance],
    test_speakers: Iterable[str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> list[Utterance]:
    """Return copies of ``records`` with ``split`` set to ``"train"`` or ``"test"``.

    No speaker is in both. Without ``test_speakers``, speakers are ranked by a stable
    hash of ``(seed, speaker)`` and the first ``round(test_fraction * n_speakers)`` become
    test speakers (at least one, and at least one left for training, when there are two
    or more speakers and ``0 < test_fraction < 1``). The result does not depend on the
    order of ``records`` or on the Python process.

    Example:
        >>> parts = split_by_speaker(records, test_fraction=0.2, seed=0)  # doctest: +SKIP
        >>> test = [r for r in parts if r.split == "test"]  # doctest: +SKIP
    """
    records = list(records)
    speakers = sorted({r.speaker for r in records})
    if test_speakers is not None:
        if isinstance(test_speakers, str):
            raise ConfigError("test_speakers must be a list of speaker ids, not one string")
        chosen = {str(s) for s in test_speakers}
        unknown = sorted(chosen - set(speakers))
        if unknown:
            log.warning("split_by_speaker: %d test speaker(s) not in the records: %s", len(unknown), unknown[:10])
        if chosen and not chosen & set(speakers):
            raise DataError(
                f"none of the {len(chosen)} requested test speakers occur in the records "
                f"(e.g. {sorted(chosen)[:3]}); check the speaker ids (generated corpora use 'source:speaker')"
            )
    else:
        if not 0.0 <= test_fraction <= 1.0:
            raise ConfigError(f"test_fraction must be in [0, 1], got {test_fraction}")
        n_test = int(round(test_fraction * len(speakers)))
        if len(speakers) >= 2 and 0.0 < test_fraction < 1.0:
            n_test = min(max(n_test, 1), len(speakers) - 1)
        ranked = sorted(speakers, key=lambda s: _speaker_rank(s, seed))
        chosen = set(ranked[:n_test])
    return [
        dataclasses.replace(r, split="test" if r.speaker in chosen else "train", words=copy.deepcopy(r.words))
        for r in records
    ]
