"""``asrguard detect`` and ``asrguard fit-detector``: thin shells over :class:`asrguard.detect.detector.Detector`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress, track
from rich.table import Table

from ..data.files import collect_audio
from ..errors import AsrguardError, ConfigError, IncompleteRunError
from . import options

# Imports inside functions keep `asrguard --help` fast (detectors import torch and scikit-learn);
# `from . import` inside register is a cycle (the package imports this module).


def _print_verdict(console, path: Path, result: dict) -> None:
    colour = "red" if result["adversarial"] else "green"
    console.print(f"[bold]{path}[/]")
    console.print(f"  verdict:    [bold {colour}]{result['verdict'].upper()}[/]  "
                  f"(score {result['score']:+.3f}, threshold {result['threshold']:+.3f}, "
                  f"target FPR {100 * result['target_fpr']:g} %, {result['classifier']})")
    console.print(f"  transcript: {result['transcript'] or '(empty)'}")


def _print_rival_explanation(console, path: Path, result: dict) -> None:
    _print_verdict(console, path, result)
    compared = result["evidence"].get("compared")
    if compared:  # the transcripts the detector compared with the input's own
        table = Table(title=f"{result['detector']} detector: what was compared", title_justify="left")
        table.add_column("copy")
        table.add_column("transcript")
        table.add_column("distance", justify="right")
        for row in compared:
            table.add_row(str(row["what"]), row["transcript"] or "(empty)", f"{row['distance']:.3f}")
        console.print(table)
    else:
        features = ", ".join(f"{k} {v:+.3g}" for k, v in result["features"].items())
        console.print(f"  {result['detector']} features: {features}")


def _print_explanation(console, path: Path, result: dict) -> None:
    if result.get("detector", "uncertainty") != "uncertainty":
        _print_rival_explanation(console, path, result)
        return
    _print_verdict(console, path, result)
    table = Table(title=f"{result['realizations']} dropout realisations at p={result['p']}: "
                        f"{len(result['distinct'])} distinct", title_justify="left")
    table.add_column("count", justify="right")
    table.add_column("transcript")
    for row in result["distinct"][:10]:
        table.add_row(str(row["count"]), row["transcript"] or "(empty)")
    if len(result["distinct"]) > 10:
        table.add_row("…", f"{len(result['distinct']) - 10} more")
    console.print(table)
    hist = result["histogram"]
    last = max((i for i, v in enumerate(hist) if v), default=0)
    console.print("  P^char (distance: count): " + ", ".join(f"{i}: {hist[i]}" for i in range(last + 1)))


def _detect_into(det, files, out, executor, workers, address, device, gpus_per_worker, as_json) -> None:
    from ..detect.batch import detect_files

    runner = options.executor_from(executor, workers, address, device, gpus_per_worker)
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("detect", total=len(files))
        summary = detect_files(det, files, out, executor=runner, on_row=lambda row: bar.advance(task))
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"{out}: {summary['scored']} of {summary['n']} files scored, {summary['adversarial']} adversarial, "
                   f"{summary['errors']} could not be scored ({summary['skipped_done']} were already done)")
    if summary["lost"]:
        raise IncompleteRunError(f"{summary['lost']} files were in flight on a worker that died; run the same "
                                 "command again to finish them")
    if summary["errors"]:
        raise typer.Exit(code=2)


def register(app: typer.Typer) -> None:
    """Add ``detect`` to the ``asrguard`` app."""
    from . import RECOGNIZER_HELP, _load_recognizer as load_recognizer, friendly_errors

    @app.command("detect")
    @friendly_errors
    def detect_command(
        files: List[Path] = typer.Argument(..., help="WAV/FLAC/OGG files or folders to check."),
        detector: Optional[Path] = typer.Option(None, "--detector", help="Detector folder (default: the shipped one)."),
        model: Optional[Path] = typer.Option(None, help="Model directory (default: the shipped model)."),
        recognizer_spec: Optional[str] = typer.Option(None, "--recognizer", help=RECOGNIZER_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object per file."),
        mask_seed: Optional[str] = typer.Option(
            None, "--mask-seed", envvar="ASRGUARD_MASK_SEED",
            help="Seed of the dropout masks instead of the detector's: an integer, or 'random' for a secret "
                 "one (never printed)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Write one JSON verdict per file to this JSONL "
                                                               "(resumable: files already in it are skipped)."),
        executor: str = options.EXECUTOR,
        workers: int = options.WORKERS,
        address: Optional[str] = options.ADDRESS,
        device: str = options.DEVICE,
        gpus_per_worker: float = options.GPUS_PER_WORKER,
    ):
        """Say whether each file is adversarial, with the dropout transcripts as evidence.

        With --out, a whole folder is scored into a JSONL of verdicts that a rerun resumes, on
        this machine or on Ray workers (--executor ray).
        """
        from ..defaults import load_detector

        if out is None and (executor != "local" or address):
            raise ConfigError("--executor ray scores into a file: add --out verdicts.jsonl")
        recognizer = load_recognizer(model, recognizer_spec) if recognizer_spec else None
        det = load_detector(detector, model, recognizer=recognizer).set_mask_seed(mask_seed)
        if out is not None:
            _detect_into(det, collect_audio(list(files), "input"), out, executor, workers, address, device,
                         gpus_per_worker, as_json)
            return
        files = [f for path in files for f in (collect_audio([path], "input") if path.is_dir() else [path])]

        console = Console()
        failed = 0
        for path in files:  # every file is scored; a bad one is reported and the rest go on
            try:
                result = det.explain(path)
            except AsrguardError as exc:
                failed += 1
                if as_json:
                    typer.echo(json.dumps({"file": str(path), "error": str(exc), "code": getattr(exc, "code", None)}))
                else:
                    Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
                continue
            if as_json:
                typer.echo(json.dumps({"file": str(path), **result}))
            else:
                _print_explanation(console, path, result)
        if failed:
            Console(stderr=True).print(f"{failed} of {len(files)} files could not be scored")
            raise typer.Exit(code=2)

    @app.command("fit-detector")
    @friendly_errors
    def fit_detector_command(
        benign: List[Path] = typer.Option(..., "--benign", help="Benign audio: files or folders (repeatable)."),
        adversarial: Optional[List[Path]] = typer.Option(
            None, "--adversarial", help="Adversarial audio: files, folders, or `asrguard attack` output folders "
                                        "(their successful examples). Omit to fit the one-class Gaussian."),
        out: Path = typer.Option(..., "--out", help="Folder to write the detector to."),
        kind: str = typer.Option("uncertainty", "--detector-kind", help="uncertainty (dropout, the default), "
                                 "distribution, transform, temporal, noise-flood, or combined (dropout + "
                                 "transform + noise-flood; needs --adversarial); see docs/detectors.md."),
        setting: Optional[List[str]] = typer.Option(
            None, "--setting", help="A rival detector's setting as KEY=VALUE (repeatable), e.g. transforms=mel,lpc "
                                    "or snr_db=30,20; see docs/detectors.md."),
        classifier: str = typer.Option("char-svm4", help="char-svm4, char-svmf, char-ds, combined, all-svm, "
                                                         "gaussian, ... (see asrguard.detect.classifiers)."),
        calibration: Optional[List[Path]] = typer.Option(
            None, "--calibration", help="Held-out benign audio for the threshold (default: the benign set)."),
        target_fpr: float = typer.Option(0.05, help="False-positive rate the threshold is chosen for."),
        realizations: int = typer.Option(50, help="Dropout realisations I."),
        p: float = typer.Option(0.1, help="Dropout rate at inference."),
        seed: int = typer.Option(0, help="Seed of the dropout masks."),
        masks: str = typer.Option("iid", help="iid (independent masks, the paper's) or balanced (each unit dropped "
                                              "equally often in every block of realisations; the CTC model)."),
        model: Optional[Path] = typer.Option(None, help="Model directory (default: the shipped model)."),
        recognizer_spec: Optional[str] = typer.Option(None, "--recognizer", help=RECOGNIZER_HELP),
    ):
        """Fit a detector on your own benign (and adversarial) audio and save it (JSON + safetensors).

        --detector-kind picks the family: the dropout-uncertainty detector (default), a rival
        (distribution, transform, temporal, noise-flood) or the combined detector, with its
        --setting values (combined: n=, p=, members=, C=). `asrguard detect`
        and `asrguard serve` load whichever kind the folder holds.
        """
        from ..detect.classifiers import make_classifier
        from ..detect.detector import Detector
        from ..uncertainty.features import FeatureExtractor, FeatureTable
        from ..uncertainty.realizations import mask_options

        recognizer = load_recognizer(model, recognizer_spec)
        if kind != "uncertainty":
            dropout_only = {"--classifier": classifier != "char-svm4", "--realizations": realizations != 50,
                            "--p": p != 0.1, "--masks": masks != "iid"}
            given = [name for name, changed in dropout_only.items() if changed]
            if given:
                raise ConfigError(f"{given[0]} is a setting of the uncertainty detector; a {kind} detector takes "
                                  "--setting KEY=VALUE (see docs/detectors.md)")
            _fit_rival(recognizer, kind, setting or [], seed, target_fpr, benign, adversarial, calibration, out)
            return
        if setting:
            raise ConfigError("--setting is for the rival detectors (--detector-kind); the uncertainty detector "
                              "takes --classifier, --realizations, --p, --seed and --masks")
        extractor = FeatureExtractor(n=realizations, p=p, seed=seed, masks=masks)
        mask_options(recognizer, masks)  # refused before any audio is read
        det = Detector(recognizer, extractor,
                       make_classifier(classifier, seed=seed), target_fpr=target_fpr)
        _fit_and_save(det, FeatureTable.stack, det.classifier.name, benign, adversarial, calibration, out)


def parse_settings(pairs: List[str]) -> dict:
    """``["transforms=mel,lpc", "draws=3"]`` -> ``{"transforms": ["mel", "lpc"], "draws": 3}``.

    A value is read as JSON when it can be (numbers, true/false), a comma-separated value as a
    list of such values, anything else as text.

    Example:
        >>> parse_settings(["snr_db=30,20", "reduce=min", "draws=3"])
        {'snr_db': [30, 20], 'reduce': 'min', 'draws': 3}
    """
    def value(text: str):
        try:
            return json.loads(text)
        except ValueError:
            return text

    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--setting {pair!r}: expected KEY=VALUE, e.g. transforms=mel,lpc")
        out[key.strip()] = [value(t.strip()) for t in text.split(",")] if "," in text else value(text.strip())
    return out


def _fit_rival(recognizer, kind: str, pairs: List[str], seed: int, target_fpr: float, benign, adversarial,
               calibration, out: Path) -> None:
    from ..detect.registry import make_detector

    settings = {"seed": seed, "target_fpr": target_fpr, **parse_settings(pairs)}
    det = make_detector(kind, recognizer, **settings)
    if not adversarial:
        det.check_adversarial_given(None)  # refused before any benign features are measured
    _fit_and_save(det, np.stack, det.rule, benign, adversarial, calibration, out)


def _fit_and_save(det, stack, name: str, benign, adversarial, calibration, out: Path) -> None:
    """Features of each set of files (``stack`` joins one set's), fit, save, and say what was saved."""
    def features(paths, what):
        files = collect_audio(paths, what)
        return stack([det.features(f, name=str(f))
                      for f in track(files, description=f"{what} features", transient=True)])

    det.fit_features(features(benign, "benign"), features(adversarial, "adversarial") if adversarial else None,
                     features(calibration, "calibration") if calibration else None)
    det.save(out)
    typer.echo(f"saved {name} detector to {out} (threshold {det.threshold:+.3f} for "
               f"{100 * det.target_fpr:g} % FPR, fitted on {det.metadata['n_benign']} benign + "
               f"{det.metadata['n_adversarial']} adversarial)")


__all__ = ["parse_settings", "register"]
