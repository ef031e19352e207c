"""``asrguard data ...`` (download corpora, write manifests, build connected digits and synthetic
speech) and ``asrguard make-example``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import typer

from ..asr import recipes
from ..audio import load_audio, save_audio
from ..data import CORPUS_READERS, build_connected_digits, tts, write_manifest
from ..data.download import download_corpus
from ..errors import AsrguardError

# `from . import` inside register is a cycle: the package imports this module.


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add ``make-example`` to the app and the ``data`` subcommands to their group."""
    from . import friendly_errors, out

    @app.command("make-example")
    @friendly_errors
    def make_example(
        text: str = typer.Option("nine one one", help="Sentence to synthesise."),
        voice: str = typer.Option("awb", help="flite voice."),
        out_path: Path = typer.Option(Path("example.wav"), "--out", help="Where to write the WAV (the bundled one is "
                                                                           "src/asrguard/assets/examples/example.wav)."),
    ):
        """Synthesise the bundled example with flite (how the shipped example was made)."""
        with tempfile.TemporaryDirectory(prefix="asrguard-tts-") as tmp:
            raw = Path(tmp) / "raw.wav"
            tts.synthesize(text, "flite", voice, raw)
            waveform, rate = load_audio(raw, 16_000)
        save_audio(out_path, waveform, rate, subtype="PCM_16")
        out.print(f"wrote {out_path} ({len(waveform) / rate:.2f} s): {text!r}")

    @data_app.command("download")
    @friendly_errors
    def data_download(
        name: str = typer.Argument(..., help="fsdd, speech-commands, urbansound8k or librispeech-SUBSET "
                                             "(test-clean, test-other, dev-clean, ...)."),
        out_dir: Path = typer.Option(..., "--out", help="Folder to unpack into (re-running skips what is there)."),
        url: Optional[str] = typer.Option(None, help="Another address for the archive: a mirror, or file:// for a "
                                                    "copy you already have."),
        sha256: Optional[str] = typer.Option(None, help="Refuse the archive unless its SHA-256 is this."),
        keep_archive: bool = typer.Option(False, "--keep-archive", help="Keep the downloaded archive."),
    ):
        """Download and unpack a public corpus, with progress, atomically and resumably (needs internet)."""
        where = download_corpus(name, out_dir, url=url, sha256=sha256, keep_archive=keep_archive, progress=True)
        out.print(f"{name} is in {where}")


    @data_app.command("manifest")
    @friendly_errors
    def data_manifest(
        corpus: str = typer.Argument(..., help="fsdd, speech_commands, urbansound8k, librispeech, common_voice, folder."),
        root: Path = typer.Argument(..., help="Corpus folder."),
        out_path: Path = typer.Option(..., "--out", help="JSONL manifest to write."),
    ):
        """Read a corpus folder and write a JSONL manifest of its utterances."""
        if corpus not in CORPUS_READERS:
            raise typer.BadParameter(f"choose one of {', '.join(sorted(CORPUS_READERS))}")
        records = CORPUS_READERS[corpus](root)
        write_manifest(out_path, records)
        out.print(f"wrote {len(records)} records to {out_path}")


    @data_app.command("connected-digits")
    @friendly_errors
    def data_connected_digits(
        out_dir: Path = typer.Option(..., "--out", help="Folder for WAVs and manifest.jsonl."),
        split: str = typer.Option("test", help="Speakers to draw from: test (held out) or train."),
        n: int = typer.Option(300, help="Number of utterances."),
        seed: int = typer.Option(0, help="Random seed."),
        data_root: Optional[Path] = typer.Option(None, help="Folder holding fsdd/."),
    ):
        """Build connected-digit utterances (1-7 digits, one speaker each) with word boundaries."""
        root = data_root or recipes.default_data_root()
        records = build_connected_digits(recipes.fsdd_records(root, split), n, seed=seed, out_dir=out_dir, split=split)
        out.print(f"wrote {len(records)} utterances to {out_dir}")


    @data_app.command("tts")
    @friendly_errors
    def data_tts(
        out_dir: Path = typer.Option(..., "--out", help="Folder for WAVs and manifest.jsonl."),
        n: int = typer.Option(100, help="Number of sentences."),
        per_sentence: int = typer.Option(2, help="Voices per sentence."),
        seed: int = typer.Option(0, help="Random seed."),
    ):
        """Synthesise command sentences with the installed offline TTS engines (resumable)."""
        engines = tts.available_tts_engines()
        if not engines:
            raise AsrguardError("no offline TTS engine found: install flite or espeak-ng (apt-get install flite espeak-ng)")
        records = tts.build_tts_corpus(tts.default_sentences(seed=seed, n=n), out_dir, seed=seed,
                                       per_sentence=per_sentence)
        out.print(f"{len(records)} utterances in {out_dir} (engines: {', '.join(engines)})")


__all__ = ["register"]
