"""Manifests, records and speaker splits."""

import json
import os

import numpy as np
import pytest

from asrguard.data import Utterance, append_record, read_jsonl, read_manifest, split_by_speaker, write_manifest
from asrguard.errors import DataError


def _records(n_speakers=10, per_speaker=3):
    return [
        Utterance(
            id=f"u{s}_{k}", path=f"/audio/{s}_{k}.wav", transcript="seven", speaker=f"spk{s}",
            sample_rate=16000, duration=1.0 + k, source="test",
        )
        for s in range(n_speakers)
        for k in range(per_speaker)
    ]


def test_utterance_dict_round_trip_keeps_words():
    u = Utterance("a", "a.wav", "one two", "s", 16000, 1.5, "x", "train",
                  words=[{"word": "one", "start": 0.1, "end": 0.5}, {"word": "two", "start": 0.7, "end": 1.2}])
    assert Utterance.from_dict(u.to_dict()) == u
    assert "words" not in _records(1, 1)[0].to_dict()


def test_a_record_holding_its_waveform_writes_and_compares_without_it(tmp_path):
    clip = Utterance.from_waveform("toy:0", np.full(800, 0.1, np.float32), 16000, "one", "s")
    assert (clip.path, clip.duration, clip.source) == ("", 0.05, "memory")
    path = write_manifest(tmp_path / "m.jsonl", [clip])
    assert "waveform" not in read_jsonl(path)[0]
    assert read_manifest(path) == [clip] and read_manifest(path)[0].waveform is None
    copy = _records(1, 1)[0].with_waveform(np.zeros(8000, np.float32), 8000, split="test")
    assert (copy.sample_rate, copy.split, copy.path) == (8000, "test", "/audio/0_0.wav")
    assert repr(copy).count("waveform") == 0


def test_manifest_round_trip(tmp_path):
    records = _records(3, 2)
    records[0].words = [{"word": "seven", "start": 0.0, "end": 0.4}]
    path = write_manifest(tmp_path / "sub" / "m.jsonl", records)
    assert read_manifest(path) == records
    assert not [p for p in path.parent.iterdir() if p.name != "m.jsonl"]  # no temp file left


def test_manifest_relative_paths_resolve_against_manifest_folder(tmp_path):
    audio = tmp_path / "wav" / "a.wav"
    rec = Utterance("a", str(audio), "", "s", 16000, 1.0, "x")
    path = write_manifest(tmp_path / "m.jsonl", [rec], relative_paths=True)
    assert json.loads(path.read_text())["path"] == os.path.join("wav", "a.wav")
    assert read_manifest(path)[0].path == str(tmp_path.resolve() / "wav" / "a.wav")


def test_write_manifest_replaces_atomically(tmp_path):
    path = tmp_path / "m.jsonl"
    write_manifest(path, _records(2, 1))
    with pytest.raises(DataError):
        write_manifest(path, [object()])  # fails while serialising: old file must survive
    assert len(read_manifest(path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]


def test_read_manifest_errors_name_path_and_line(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_manifest(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    good = json.dumps(_records(1, 1)[0].to_dict())
    bad.write_text(f"{good}\n\n{{not json\n")
    with pytest.raises(DataError, match=r"bad\.jsonl: line 3"):
        read_manifest(bad)
    bad.write_text(f'{good}\n{{"id": "x"}}\n')
    with pytest.raises(DataError, match=r"line 2.*lacks"):
        read_manifest(bad)


def test_append_record_and_partial_tail(tmp_path):
    path = tmp_path / "runs" / "r.jsonl"
    append_record(path, {"id": "a", "score": 1})
    with open(path, "a") as fh:
        fh.write('{"id": "b", "sco')  # a run killed mid-write
    with pytest.raises(DataError, match="line 2"):
        read_jsonl(path)
    assert read_jsonl(path, allow_partial_tail=True) == [{"id": "a", "score": 1}]
    append_record(path, _records(1, 1)[0])
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"id": "a", "score": 1}
    assert json.loads(lines[-1])["id"] == "u0_0"  # new record is on its own line


def test_split_by_speaker_disjoint_and_deterministic():
    records = _records(10, 3)
    a = split_by_speaker(records, test_fraction=0.2, seed=3)
    b = split_by_speaker(list(reversed(records)), test_fraction=0.2, seed=3)
    assert {r.id: r.split for r in a} == {r.id: r.split for r in b}
    train = {r.speaker for r in a if r.split == "train"}
    test = {r.speaker for r in a if r.split == "test"}
    assert not train & test and len(test) == 2 and len(train) == 8
    assert all(r.split == "" for r in records)  # inputs untouched: copies returned
    many = _records(50, 1)
    seeds = [{r.speaker for r in split_by_speaker(many, seed=s) if r.split == "test"} for s in (0, 1)]
    assert seeds[0] != seeds[1] and len(seeds[0]) == 10


def test_split_by_speaker_explicit_and_small():
    records = _records(3, 2)
    parts = split_by_speaker(records, test_speakers=["spk1"])
    assert {r.speaker for r in parts if r.split == "test"} == {"spk1"}
    few = split_by_speaker(_records(2, 1), test_fraction=0.1)
    assert sorted(r.split for r in few) == ["test", "train"]  # never an empty side
    with pytest.raises(DataError, match="none of the"):
        split_by_speaker(records, test_speakers=["nobody"])
