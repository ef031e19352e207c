"""Download and unpack the public corpora, safely and resumably.

Every download goes to a ``.part`` file next to its target and is renamed only when
complete, and every archive is unpacked into a temporary folder inside ``dest`` and
moved into place only when complete, so an interrupted run never leaves something that
looks finished. Archive members that would land outside ``dest`` (``../x``, absolute
paths, links) are refused. A corpus that is already in place is not fetched again.

Example:
    >>> from asrguard.data import download_fsdd, read_fsdd
    >>> records = read_fsdd(download_fsdd("data/fsdd"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

from ..errors import ConfigError, DataError

log = logging.getLogger(__name__)

FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/heads/master.zip"
SPEECH_COMMANDS_TEST_URL = "https://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz"
LIBRISPEECH_URL = "https://www.openslr.org/resources/12/{subset}.tar.gz"
URBANSOUND8K_URL = "https://zenodo.org/record/1203745/files/UrbanSound8K.tar.gz"
LIBRISPEECH_SUBSETS = (
    "dev-clean", "dev-other", "test-clean", "test-other",
    "train-clean-100", "train-clean-360", "train-other-500",
)

_CHUNK = 1 << 20


def download_file(
    url: str, dest: str | os.PathLike, *, sha256: str | None = None, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Fetch ``url`` (http, https or file) to ``dest`` atomically; return ``dest``.

    The data is written to ``dest.part`` and renamed once complete (and, if ``sha256``
    is given, verified). An existing ``dest`` is kept as it is.

    Example:
        >>> download_file("file:///tmp/x.zip", "data/x.zip", progress=False)  # doctest: +SKIP
    """
    dest = Path(dest)
    if dest.is_file():
        log.info("%s: already downloaded", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "asrguard-data/1"})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(part, "wb") as fh:
            total = int(response.headers.get("Content-Length") or 0)
            reporter = _Progress(dest.name, total) if progress else None
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                fh.write(chunk)
                digest.update(chunk)
                if reporter:
                    reporter.update(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
            if reporter:
                reporter.close()
    except (OSError, ValueError) as exc:  # URLError is an OSError
        part.unlink(missing_ok=True)
        raise DataError(
            f"{url}: download failed ({exc}); check the network, or fetch it by hand and save it as {dest}"
        ) from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if sha256 is not None and digest.hexdigest() != sha256.lower():
        part.unlink(missing_ok=True)
        raise DataError(f"{url}: checksum mismatch (got {digest.hexdigest()}, expected {sha256}); try again")
    os.replace(part, dest)
    return dest


class _Progress:
    """Bytes-so-far on stderr: one rewritten line on a terminal, a line per 10 % otherwise."""

    def __init__(self, name: str, total: int):
        self.name, self.total, self.done = name, total, 0
        self.tty = sys.stderr.isatty()
        self.last_step = -1
        self.last_time = 0.0

    def update(self, n: int) -> None:
        self.done += n
        step = int(10 * self.done / self.total) if self.total else self.done // (50 * _CHUNK)
        now = time.monotonic()
        if self.tty and now - self.last_time > 0.2:
            self.last_time = now
            sys.stderr.write(f"\r{self._text()}")
            sys.stderr.flush()
        elif not self.tty and step != self.last_step:
            self.last_step = step
            sys.stderr.write(self._text() + "\n")

    def close(self) -> None:
        if self.tty:
            sys.stderr.write(f"\r{self._text()}\n")

    def _text(self) -> str:
        mb = self.done / 1e6
        if self.total:
            return f"{self.name}: {mb:.1f}/{self.total / 1e6:.1f} MB ({100 * self.done / self.total:.0f}%)"
        return f"{self.name}: {mb:.1f} MB"


def _safe_target(root: Path, name: str, archive: Path) -> Path:
    target = (root / name).resolve()
    if os.path.isabs(name) or not target.is_relative_to(root.resolve()):
        raise DataError(f"{archive}: member {name!r} would be written outside {root}; refusing to extract")
    return target


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Unpack a .zip / .tar / .tar.gz / .tgz / .tar.bz2 / .tar.xz into ``dest``.

    Members are unpacked into a hidden temporary folder inside ``dest`` and each
    top-level entry is then renamed into ``dest`` (replacing an older copy). Absolute
    paths, ``..`` components, links and device files are refused before anything is
    written. Returns the top-level paths created in ``dest``.

    Example:
        >>> extract_archive("data/fsdd.zip", "data/fsdd")  # doctest: +SKIP
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DataError(f"{archive}: archive not found")
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _safe_target(staging, info.filename, archive)
                    # Zip entries made on Unix can be symlinks (mode 0o120000 in the high bits).
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise DataError(f"{archive}: member {info.filename!r} is a symlink; refusing to extract")
                zf.extractall(staging)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for member in members:
                    _safe_target(staging, member.name, archive)
                    if not (member.isfile() or member.isdir()):
                        raise DataError(
                            f"{archive}: member {member.name!r} is a link or device file; refusing to extract"
                        )
                tf.extractall(staging, members=members, **_tar_filter())
        else:
            raise DataError(f"{archive}: not a zip or tar archive; delete it and download again")
        created = []
        for entry in sorted(staging.iterdir()):
            target = dest / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
            created.append(target)
        return created
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise DataError(f"{archive}: archive is corrupt ({exc}); delete it and download again") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _tar_filter() -> dict:
    # Python >= 3.11.4 has extraction filters; "data" is a second line of defence.
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def _fetch_and_extract(url: str, dest: Path, archive_name: str, *, keep_archive: bool, progress: bool,
                       sha256: str | None = None) -> None:
    archive = download_file(url, dest / archive_name, progress=progress, sha256=sha256)
    extract_archive(archive, dest)
    if not keep_archive:
        archive.unlink(missing_ok=True)


def download_fsdd(dest, *, keep_archive: bool = False, progress: bool = True, url: str | None = None,
                  sha256: str | None = None) -> Path:
    """Free Spoken Digit Dataset (CC BY-SA 4.0) into ``dest/recordings``; returns ``dest``.

    Example:
        >>> records = read_fsdd(download_fsdd("data/fsdd"))  # doctest: +SKIP
    """
    dest = Path(dest)
    if (dest / "recordings").is_dir() and any((dest / "recordings").glob("*.wav")):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=".fsdd-"))
    try:
        archive = download_file(url or FSDD_URL, dest / "fsdd-master.zip", progress=progress, sha256=sha256)
        extract_archive(archive, staging)
        # The GitHub archive nests everything under one '{repo}-{branch}/' folder.
        found = sorted(staging.glob("*/recordings"))
        if not found:
            raise DataError(f"{archive}: has no recordings/ folder; the repository layout changed")
        os.replace(found[0], dest / "recordings")
        meta = found[0].parent / "metadata.py"
        if meta.is_file():
            shutil.copy2(meta, dest / "metadata.py")
        if not keep_archive:
            archive.unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def download_speech_commands(dest, *, keep_archive: bool = False, progress: bool = True, url: str | None = None,
                             sha256: str | None = None) -> Path:
    """Speech Commands v0.02 canonical test set (CC BY 4.0, ~110 MB) into ``dest``; returns ``dest``.

    Example:
        >>> records = read_speech_commands(download_speech_commands("data/sc_test"))  # doctest: +SKIP
    """
    dest = Path(dest)
    if (dest / "yes").is_dir() and (dest / "_unknown_").is_dir():
        return dest
    _fetch_and_extract(
        url or SPEECH_COMMANDS_TEST_URL, dest, "speech_commands_test_set_v0.02.tar.gz",
        keep_archive=keep_archive, progress=progress, sha256=sha256,
    )
    return dest


def download_librispeech(
    dest, subset: str = "test-clean", *, keep_archive: bool = False, progress: bool = True, url: str | None = None,
    sha256: str | None = None,
) -> Path:
    """One LibriSpeech subset (CC BY 4.0) from OpenSLR resource 12; returns ``dest/LibriSpeech/{subset}``.

    Example:
        >>> records = read_librispeech(download_librispeech("data"))  # doctest: +SKIP
    """
    if subset not in LIBRISPEECH_SUBSETS:
        raise ConfigError(f"unknown LibriSpeech subset {subset!r}; choose one of {', '.join(LIBRISPEECH_SUBSETS)}")
    dest = Path(dest)
    target = dest / "LibriSpeech" / subset
    if target.is_dir() and any(target.rglob("*.trans.txt")):
        return target
    # The archive holds 'LibriSpeech/{subset}/...'; extract_archive would replace the
    # whole LibriSpeech/ folder, so unpack aside and move only the subset in.
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=".librispeech-"))
    try:
        archive = download_file(url or LIBRISPEECH_URL.format(subset=subset), dest / f"{subset}.tar.gz",
                                progress=progress, sha256=sha256)
        extract_archive(archive, staging)
        unpacked = staging / "LibriSpeech" / subset
        if not unpacked.is_dir():
            raise DataError(f"{archive}: has no LibriSpeech/{subset}/ folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        for extra in (staging / "LibriSpeech").iterdir():
            if extra.is_file() and not (target.parent / extra.name).exists():
                os.replace(extra, target.parent / extra.name)  # README, SPEAKERS.TXT, ...
        if target.exists():
            shutil.rmtree(target)
        os.replace(unpacked, target)
        if not keep_archive:
            archive.unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def download_urbansound8k(dest, *, keep_archive: bool = False, progress: bool = True, url: str | None = None,
                          sha256: str | None = None) -> Path:
    """UrbanSound8K (CC BY-NC 3.0, research only; ~6 GB) from Zenodo; returns ``dest/UrbanSound8K``.

    If Zenodo refuses the download, fill in the form on
    https://urbansounddataset.weebly.com/urbansound8k.html, save ``UrbanSound8K.tar.gz``
    into ``dest`` and call this again: an archive already there is used as it is.

    Example:
        >>> records = read_urbansound8k(download_urbansound8k("data"))  # doctest: +SKIP
    """
    dest = Path(dest)
    target = dest / "UrbanSound8K"
    if (target / "metadata" / "UrbanSound8K.csv").is_file():
        return target
    try:
        _fetch_and_extract(url or URBANSOUND8K_URL, dest, "UrbanSound8K.tar.gz", keep_archive=keep_archive,
                           progress=progress, sha256=sha256)
    except DataError as exc:
        raise DataError(
            f"{exc}. UrbanSound8K may need a manual download: fill in the form at "
            f"https://urbansounddataset.weebly.com/urbansound8k.html, save UrbanSound8K.tar.gz in {dest} "
            "and run this again"
        ) from None
    if not (target / "metadata" / "UrbanSound8K.csv").is_file():
        raise DataError(f"{target}: extracted archive lacks metadata/UrbanSound8K.csv; delete it and download again")
    return target


#: Corpora ``asrguard data download`` knows, by name.
CORPORA = ("fsdd", "speech-commands", "urbansound8k", *(f"librispeech-{s}" for s in LIBRISPEECH_SUBSETS))


def download_corpus(name: str, dest, *, url: str | None = None, sha256: str | None = None,
                    keep_archive: bool = False, progress: bool = True) -> Path:
    """Download and unpack corpus ``name`` (see :data:`CORPORA`) into ``dest``; returns where it landed.

    ``url`` replaces the published address (a mirror, or ``file://`` for an archive you already
    have); ``sha256`` makes the archive's checksum a condition.

    Example:
        >>> download_corpus("fsdd", "data/fsdd")                              # doctest: +SKIP
        PosixPath('data/fsdd')
    """
    options = {"keep_archive": keep_archive, "progress": progress, "url": url, "sha256": sha256}
    if name == "fsdd":
        return download_fsdd(dest, **options)
    if name == "speech-commands":
        return download_speech_commands(dest, **options)
    if name == "urbansound8k":
        return download_urbansound8k(dest, **options)
    if name.startswith("librispeech-"):
        return download_librispeech(dest, name.removeprefix("librispeech-"), **options)
    raise ConfigError(f"unknown corpus {name!r}; choose from {', '.join(CORPORA)}")
