"""Download and extraction helpers, offline: file:// URLs and archives built by the test."""

import io
import tarfile
import zipfile

import pytest

from asrguard.data import download_file, extract_archive
from asrguard.data import download as download_module
from asrguard.errors import ConfigError, DataError


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_download_file_from_file_url_is_atomic(tmp_path):
    src = _tar(tmp_path / "src.tar.gz", {"corpus/yes/a_nohash_0.wav": b"RIFF"})
    dest = download_file(src.as_uri(), tmp_path / "dl" / "corpus.tar.gz", progress=False)
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["corpus.tar.gz"]  # no .part left

    with pytest.raises(DataError, match="checksum mismatch"):
        download_file(src.as_uri(), tmp_path / "dl2" / "x.tar.gz", sha256="0" * 64, progress=False)
    assert not list((tmp_path / "dl2").iterdir())
    with pytest.raises(DataError, match="download failed"):
        download_file((tmp_path / "missing.zip").as_uri(), tmp_path / "dl3" / "m.zip", progress=False)
    assert not list((tmp_path / "dl3").iterdir())


def test_extract_tar_and_zip(tmp_path):
    tar = _tar(tmp_path / "a.tar.gz", {"LibriSpeech/test-clean/1/2/1-2.trans.txt": b"1-2-0000 HI\n"})
    created = extract_archive(tar, tmp_path / "out")
    assert [p.name for p in created] == ["LibriSpeech"]
    assert (tmp_path / "out/LibriSpeech/test-clean/1/2/1-2.trans.txt").read_text() == "1-2-0000 HI\n"

    zpath = tmp_path / "b.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("repo-master/recordings/0_theo_0.wav", b"RIFF")
    extract_archive(zpath, tmp_path / "out")
    assert (tmp_path / "out/repo-master/recordings/0_theo_0.wav").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["LibriSpeech", "repo-master"]  # no staging dir


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil_abs.txt", "ok/../../evil.txt"])
def test_extract_refuses_path_traversal(tmp_path, name):
    zpath = tmp_path / "bad.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("fine.txt", b"x")
        zf.writestr(name, b"x")
    with pytest.raises(DataError, match="outside"):
        extract_archive(zpath, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not list((tmp_path / "out").iterdir())
    with pytest.raises(DataError, match="outside"):
        extract_archive(_tar(tmp_path / "bad.tar.gz", {name: b"x"}), tmp_path / "out2")


def test_extract_refuses_links_and_garbage(tmp_path):
    path = tmp_path / "link.tar"
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo("data/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(DataError, match="link"):
        extract_archive(path, tmp_path / "out")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive")
    with pytest.raises(DataError, match="not a zip or tar"):
        extract_archive(junk, tmp_path / "out")


def test_download_corpus_skips_when_present_and_checks_subset(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network touched")

    monkeypatch.setattr(download_module, "download_file", no_network)
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "0_theo_0.wav").write_bytes(b"RIFF")
    assert download_module.download_fsdd(tmp_path) == tmp_path
    with pytest.raises(ConfigError, match="unknown LibriSpeech subset"):
        download_module.download_librispeech(tmp_path, subset="test-dirty")


def test_data_download_command_unpacks_a_local_archive_with_its_checksum(tmp_path):
    import hashlib

    from typer.testing import CliRunner

    from asrguard.cli import app

    archive = _tar(tmp_path / "sc.tar.gz", {"yes/a_nohash_0.wav": b"RIFF", "_unknown_/b.wav": b"RIFF"})
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    runner = CliRunner()
    wrong = runner.invoke(app, ["data", "download", "speech-commands", "--out", str(tmp_path / "bad"),
                                "--url", archive.as_uri(), "--sha256", "0" * 64])
    assert wrong.exit_code == 2 and "checksum mismatch" in wrong.output
    done = runner.invoke(app, ["data", "download", "speech-commands", "--out", str(tmp_path / "sc"),
                               "--url", archive.as_uri(), "--sha256", digest])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "sc" / "yes" / "a_nohash_0.wav").read_bytes() == b"RIFF"
    assert not (tmp_path / "sc" / "sc.tar.gz").exists() and not list((tmp_path / "sc").glob("*.part"))
    unknown = runner.invoke(app, ["data", "download", "imagenet", "--out", str(tmp_path / "x")])
    assert unknown.exit_code == 2 and "unknown corpus" in unknown.output
