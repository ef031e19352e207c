"""Corpus readers, each on a tiny fixture in its published layout, plus the real data when present."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrguard.data import (
    CORPUS_READERS,
    read_audio_folder,
    read_common_voice,
    read_fsdd,
    read_librispeech,
    read_speech_commands,
    read_urbansound8k,
)
from asrguard.asr.recipes import urbansound_records
from asrguard.errors import DataError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _tone(path: Path, rate: int = 8000, seconds: float = 0.25) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
    return path


def test_read_fsdd(tmp_path):
    for name in ("7_theo_0", "7_theo_1", "0_george_12"):
        _tone(tmp_path / "recordings" / f"{name}.wav")
    (tmp_path / "recordings" / "README.md").write_text("not audio")
    records = read_fsdd(tmp_path)
    assert [(r.transcript, r.speaker) for r in records] == [("zero", "george"), ("seven", "theo"), ("seven", "theo")]
    r = records[0]
    assert r.sample_rate == 8000 and r.duration == pytest.approx(0.25) and r.source == "fsdd"
    assert Path(r.path).is_file() and r.id == "fsdd:0_george_12"
    assert read_fsdd(tmp_path / "recordings") == records  # the recordings folder itself works too
    with pytest.raises(DataError, match="not found"):
        read_fsdd(tmp_path / "nope")


def test_read_speech_commands(tmp_path):
    _tone(tmp_path / "yes" / "0a2b400e_nohash_0.wav", 16000)
    _tone(tmp_path / "yes" / "0a2b400e_nohash_1.flac", 16000)
    _tone(tmp_path / "stop" / "1b2c3d4e_nohash_0.flac", 16000)
    _tone(tmp_path / "_unknown_" / "eight_0a2b400e_nohash_0.flac", 16000)
    _tone(tmp_path / "_unknown_" / "marvin_99aa88bb_nohash_3.wav", 16000)
    _tone(tmp_path / "_silence_" / "1024.flac", 16000)
    _tone(tmp_path / "_background_noise_" / "white_noise.wav", 16000)
    (tmp_path / "LICENSE").write_text("cc-by")

    records = read_speech_commands(tmp_path)
    got = {(r.transcript, r.speaker) for r in records}
    assert got == {("yes", "0a2b400e"), ("stop", "1b2c3d4e"), ("eight", "0a2b400e"), ("marvin", "99aa88bb")}
    assert len(records) == 5 and len({r.id for r in records}) == 5
    assert all(r.sample_rate == 16000 and r.source == "speech_commands" for r in records)

    with_silence = read_speech_commands(tmp_path, include_silence=True)
    silence = [r for r in with_silence if r.transcript == ""]
    assert len(with_silence) == 6 and len(silence) == 1 and silence[0].speaker.startswith("silence")


def test_read_urbansound8k_subset_layout(tmp_path):
    rows = [
        ("100648-1-3-0.flac", "100648", "10", "1", "car_horn"),
        ("100652-3-0-2.flac", "100652", "2", "3", "dog_bark"),
    ]
    lines = ["slice_file_name,fsID,fold,classID,class"] + [",".join(r) for r in rows]
    (tmp_path / "metadata.csv").write_text("\n".join(lines) + "\n")
    for name, _, fold, _, _ in rows:
        _tone(tmp_path / "audio" / f"fold{fold}" / name, 16000)
    records = read_urbansound8k(tmp_path)
    assert [r.id for r in records] == ["urbansound8k:car_horn:100648-1-3-0", "urbansound8k:dog_bark:100652-3-0-2"]
    assert [r.speaker for r in records] == ["100648", "100652"]
    assert all(r.transcript == "" and r.source == "urbansound8k" for r in records)
    # training may use folds 2 and 3 as non-speech; the US attack's carriers come from the others
    subset = tmp_path.parent / f"{tmp_path.name}-root"
    (subset).mkdir()
    (subset / "urbansound8k_subset").symlink_to(tmp_path)
    assert [r.id for r in urbansound_records(subset, "train")] == ["urbansound8k:dog_bark:100652-3-0-2"]
    assert [r.id for r in urbansound_records(subset, "test")] == ["urbansound8k:car_horn:100648-1-3-0"]


def test_read_urbansound8k_official_layout_skips_missing(tmp_path):
    (tmp_path / "metadata").mkdir()
    (tmp_path / "metadata" / "UrbanSound8K.csv").write_text(
        "slice_file_name,fsID,start,end,salience,fold,classID,class\n"
        "7061-6-0-0.wav,7061,0.0,0.5,1,1,6,gun_shot\n"
        "9999-6-0-0.wav,9999,0.0,0.5,1,2,6,gun_shot\n"
    )
    _tone(tmp_path / "audio" / "fold1" / "7061-6-0-0.wav", 22050)
    records = read_urbansound8k(tmp_path)
    assert len(records) == 1 and records[0].sample_rate == 22050 and records[0].speaker == "7061"


def test_read_librispeech(tmp_path):
    chapter = tmp_path / "test-clean" / "1089" / "134686"
    chapter.mkdir(parents=True)
    (chapter / "1089-134686.trans.txt").write_text(
        "1089-134686-0000 HE HOPED THERE WOULD BE STEW\n1089-134686-0001 STUFF IT INTO YOU\n"
    )
    for i in range(2):
        _tone(chapter / f"1089-134686-000{i}.flac", 16000)
    records = read_librispeech(tmp_path / "test-clean")
    assert [r.transcript for r in records] == ["he hoped there would be stew", "stuff it into you"]
    assert {r.speaker for r in records} == {"1089"} and records[0].id == "librispeech:1089-134686-0000"
    (chapter / "1089-134686-0001.flac").unlink()
    with pytest.raises(DataError, match="line 2.*missing"):
        read_librispeech(tmp_path)


def test_read_common_voice(tmp_path):
    (tmp_path / "test.tsv").write_text(
        "client_id\tpath\tsentence\tup_votes\n"
        'abc123\tcommon_voice_en_1.wav\tHe said "Hello, 2 you."\t2\n'
        "def456\tcommon_voice_en_2.wav\tOK Google.\t1\n"
    )
    for i in (1, 2):
        _tone(tmp_path / "clips" / f"common_voice_en_{i}.wav", 48000)
    records = read_common_voice(tmp_path)
    got = [(r.speaker, r.transcript) for r in records]
    assert got == [("abc123", "he said hello two you"), ("def456", "ok google")]
    with pytest.raises(DataError, match="dev.tsv: not found"):
        read_common_voice(tmp_path, tsv="dev.tsv")


def test_read_audio_folder(tmp_path):
    _tone(tmp_path / "a" / "one.wav")
    _tone(tmp_path / "two.flac")
    (tmp_path / "metadata.csv").write_text(
        "path,transcript,speaker\na/one.wav,Call Mom!,alice\ntwo.flac,open the door,\n"
    )
    records = read_audio_folder(tmp_path)
    assert [(r.transcript, r.speaker) for r in records] == [("call mom", "alice"), ("open the door", "unknown")]
    (tmp_path / "bad.csv").write_text("path,transcript\nmissing.wav,x\n")
    with pytest.raises(DataError, match="line 2.*missing.wav"):
        read_audio_folder(tmp_path, csv_path=tmp_path / "bad.csv")
    expected = {"fsdd", "speech_commands", "urbansound8k", "librispeech", "common_voice", "audio_folder"}
    assert set(CORPUS_READERS) >= expected


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real corpora not found at {SHARED_DATA}")
def test_real_fsdd_and_speech_commands():
    fsdd = read_fsdd(SHARED_DATA / "fsdd")
    assert len(fsdd) == 3000
    assert {r.speaker for r in fsdd} == {"george", "jackson", "lucas", "nicolas", "theo", "yweweler"}
    assert all(Path(r.path).stem.split("_")[1] == r.speaker for r in fsdd)

    sc_dir = SHARED_DATA / "speech_commands_v0.02_test"
    everything = read_speech_commands(sc_dir, include_silence=True)
    speech = read_speech_commands(sc_dir)
    assert 4800 <= len(everything) <= 5000 and len(speech) < len(everything)
    assert len(everything) - len(speech) == sum(1 for _ in (sc_dir / "_silence_").iterdir())
    for r in speech:
        stem = Path(r.path).stem
        assert stem.split("_nohash_")[0].split("_")[-1] == r.speaker and "_" not in r.speaker
        if "/_unknown_/" in r.path:
            assert stem.startswith(r.transcript + "_")
    assert 200 <= len({r.speaker for r in speech}) <= 260
