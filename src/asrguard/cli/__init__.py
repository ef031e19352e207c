"""The ``asrguard`` command: a thin shell over the library calls."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from typer.core import TyperOption

from ..asr import recipes
from ..asr.lm import WordBigramLM, load_default_lm, make_decoder
from ..audio import load_audio
from ..errors import AsrguardError, ConfigError
from ..text import normalize_english
from . import options as cli_options
from .attack import register as register_attack_commands
from .compare import register as register_compare_command
from .data import register as register_data_commands
from .detect import register as register_detect_commands
from .serve import register as register_serve_command

# Imports inside functions keep `asrguard --help` fast: torch, scikit-learn and the experiments load
# only when a command that needs them runs.


def _hide_flag_types() -> None:
    """Help lists on/off flags without a ``<bool>`` type: a flag takes no value, so it shows none."""
    shown = TyperOption.display_type_rich
    if getattr(shown, "_asrguard", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._asrguard = True
    TyperOption.display_type_rich = display_type_rich


_hide_flag_types()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"asrguard {metadata.version('asrguard')}")
        raise typer.Exit()


app = typer.Typer(
    help="asrguard: attack speech recognisers and detect adversarial audio from their uncertainty.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build manifests, connected-digit sets and synthetic speech.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
):
    """asrguard: attack speech recognisers and detect adversarial audio from their uncertainty."""


console = Console(stderr=True)
out = Console()

EXAMPLE_DIR = Path(__file__).resolve().parents[1] / "assets" / "examples"
EXAMPLE_AUDIO = EXAMPLE_DIR / "example.wav"


def friendly_errors(command):
    """Turn asrguard errors into one red line and exit code 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except AsrguardError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: progress so far is saved; run the same command to resume")
            raise typer.Exit(code=130) from None

    return wrapper


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)], force=True)


RECOGNIZER_HELP = ("Recogniser: ctc (the shipped CTC model), ctc:PATH, hybrid:PATH, whisper:tiny.en, whisper:PATH "
                   "or hf:NAME_OR_PATH; loader options follow a '?', as in whisper:tiny.en ?window=own "
                   "(written without the space).")


def _load_recognizer(model: Optional[Path], recognizer: Optional[str] = None):
    from ..asr.registry import load_recognizer

    if model is not None and recognizer is not None:
        raise ConfigError("give --model or --recognizer, not both (--model PATH is --recognizer ctc:PATH)")
    return load_recognizer(recognizer if recognizer is not None else model)


@app.command()
@friendly_errors
def transcribe(
    audio: List[Path] = typer.Argument(None, help="WAV/FLAC files; default: the bundled example."),
    model: Optional[Path] = typer.Option(None, help="Model directory (default: the shipped model)."),
    recognizer_spec: Optional[str] = typer.Option(None, "--recognizer", help=RECOGNIZER_HELP),
    realizations: int = typer.Option(50, "--realizations", "-n", min=0, help="Dropout realisations I (0: none)."),
    p: Optional[float] = typer.Option(None, help="Inference dropout rate for the realisations [default: 0.1 for "
                                                 "the CTC model, the recogniser's own otherwise (Whisper: 0.02)]."),
    seed: int = typer.Option(0, help="Seed for the dropout masks."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per file."),
):
    """Print the deterministic transcript and the distinct dropout transcripts with counts."""
    recognizer = _load_recognizer(model, recognizer_spec)
    if p is None:
        p = getattr(recognizer, "default_p", 0.1)  # Whisper's dropout is its own choice (see its model card)
    paths = audio or [EXAMPLE_AUDIO]
    for path in paths:
        waveform, _ = load_audio(path, recognizer.sample_rate)
        transcript = recognizer.transcribe([waveform])[0]
        counts = Counter()
        if realizations:
            counts = Counter(recognizer.realizations(waveform, realizations, seed, p=p).transcripts)
        if as_json:
            out.print_json(json.dumps({
                "file": str(path), "transcript": transcript, "realizations": realizations, "p": p,
                "seed": seed, "distinct": [{"transcript": t, "count": c} for t, c in counts.most_common()],
            }))
            continue
        out.print(f"[bold]{path}[/]")
        out.print(f"  transcript: [green]{transcript or '(empty)'}[/]")
        if realizations:
            table = Table(title=f"{realizations} dropout realisations at p={p} (seed {seed}): "
                                f"{len(counts)} distinct", title_justify="left")
            table.add_column("count", justify="right")
            table.add_column("transcript")
            for text, count in counts.most_common():
                table.add_row(str(count), text or "(empty)")
            out.print(table)


@app.command()
@friendly_errors
def train(
    config: Path = typer.Argument(..., help="Training config JSON, e.g. configs/ctc_default.json."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Override the config's out_dir."),
    epochs: Optional[int] = typer.Option(None, help="Override the number of epochs."),
    max_minutes: Optional[float] = typer.Option(None, help="Override the training-time budget (0: none)."),
    progress: bool = typer.Option(True, help="Show progress bars."),
):
    """Train the CTC recogniser (resumes from the last checkpoint in out_dir)."""
    from ..asr.train import TrainConfig, train as run_training

    _setup_logging(True)
    cfg = TrainConfig.from_file(config)
    if out_dir is not None:
        cfg.out_dir = str(out_dir)
    if epochs is not None:
        cfg.epochs = epochs
    if max_minutes is not None:
        cfg.max_minutes = max_minutes or None
    recognizer = run_training(cfg, progress=progress)
    out.print(f"saved model to {Path(cfg.out_dir) / 'model'} ({recognizer.n_parameters():,} parameters)")


@app.command("asr-eval")
@friendly_errors
def asr_eval(
    corpus: str = typer.Option("fsdd-digits", help="fsdd-digits, fsdd-isolated, speech-commands, sc-digits or "
                                                   "english-speech (895 real English utterances, scored per subset "
                                                   "after Whisper's English normalisation)."),
    split: str = typer.Option("test", help="test (held-out speakers) or train."),
    model: Optional[Path] = typer.Option(None, help="Model directory (default: the shipped model)."),
    recognizer_spec: Optional[str] = typer.Option(None, "--recognizer", help=RECOGNIZER_HELP),
    data_root: Optional[Path] = typer.Option(None, help="Folder holding fsdd/ and speech_commands_v0.02_test/."),
    limit: Optional[int] = typer.Option(None, help="Score a seeded subset of this many utterances."),
    decoder: str = typer.Option("greedy", help="greedy (what attacks and detection use) or lm: beam search "
                                               "with the word bigram fitted on the training transcripts."),
    lm: Optional[Path] = typer.Option(None, help="Word bigram JSON for --decoder lm (default: the shipped one)."),
    lm_weight: float = typer.Option(0.5, help="--decoder lm: weight α of the LM log-probability."),
    word_bonus: float = typer.Option(1.0, help="--decoder lm: bonus β per word."),
    details: bool = typer.Option(False, "--details", help="Also give accuracy per word and the most frequent "
                                                            "substitutions, deletions and insertions."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Score the recogniser (CER, WER, word accuracy) on a held-out set."""
    from ..asr.train import evaluate

    if decoder not in ("greedy", "lm"):
        raise ConfigError(f"--decoder must be greedy or lm, got {decoder!r}")
    recognizer = _load_recognizer(model, recognizer_spec)
    spec = recognizer_spec or (f"ctc:{model}" if model else "ctc")
    if corpus == "english-speech" or not spec.startswith("ctc"):
        _asr_eval_any(recognizer, spec, corpus, split, data_root, limit, decoder, as_json)
        return
    decode = None
    if decoder == "lm":
        decode = make_decoder(WordBigramLM.load(lm) if lm else load_default_lm(), alpha=lm_weight, beta=word_bonus)
    items = recipes.evaluation_set(corpus, split, data_root, limit=limit)
    metrics = evaluate(recognizer, items, decoder=decode, details=details)
    metrics.update(corpus=corpus, split=split, model=str(model or "default"), decoder=decoder)
    if decoder == "lm":
        metrics.update(lm=str(lm or "default"), lm_weight=lm_weight, word_bonus=word_bonus)
    if as_json:
        out.print_json(json.dumps(metrics))
    else:
        for key in ("corpus", "split", "n_utterances", "cer", "wer", "word_accuracy", "utterance_accuracy"):
            out.print(f"{key:>20}: {metrics[key]}")
        out.print(f"{'speakers':>20}: {len(metrics['speakers'])}")
        if details:
            _print_word_errors(metrics["word_errors"])


def _asr_eval_any(recognizer, spec: str, corpus: str, split: str, data_root, limit, decoder: str,
                  as_json: bool) -> None:
    """asr-eval for any recogniser: transcripts only; english-speech normalised as Whisper's evaluation does."""
    from ..evaluate.recognition import evaluate_transcriber

    if decoder != "greedy":
        raise ConfigError("--decoder lm decodes the CTC model's characters; it needs --recognizer ctc")
    items = recipes.evaluation_set(corpus, split, data_root, limit=limit)
    normalize = normalize_english if corpus == "english-speech" else None
    metrics = evaluate_transcriber(recognizer, items, normalize=normalize, progress=not as_json,
                                   per_subset=corpus == "english-speech")
    metrics.update(corpus=corpus, split=split, recognizer=spec, normalization="whisper-english" if normalize else None)
    if as_json:
        out.print_json(json.dumps({k: v for k, v in metrics.items() if k != "examples"}))
        return
    for key in ("corpus", "recognizer", "n_utterances", "cer", "wer", "real_time_factor"):
        out.print(f"{key:>20}: {metrics[key]}")
    table = Table(title="per subset", title_justify="left")
    for column in ("subset", "n", "WER %", "CER %"):
        table.add_column(column, justify="left" if column == "subset" else "right")
    for subset, m in metrics.get("per_subset", {}).items():
        table.add_row(subset, str(m["n_utterances"]), f"{100 * m['wer']:.1f}", f"{100 * m['cer']:.1f}")
    out.print(table)


def _print_word_errors(errors: dict, worst: int = 10) -> None:
    words = list(errors["per_word"].items())[:worst]
    out.print(f"{'worst words':>20}: " + ", ".join(f"{w} {e['correct']}/{e['n']}" for w, e in words))
    for label, rows in (("substitutions", errors["substitutions"]), ("deletions", errors["deletions"]),
                        ("insertions", errors["insertions"])):
        if rows:
            out.print(f"{label:>20}: " + ", ".join(" → ".join(r[:-1]) + f" ×{r[-1]}" for r in rows))


@app.command("model-card")
@friendly_errors
def model_card(
    model: Optional[Path] = typer.Option(None, help="Model directory (default: the shipped model)."),
    data_root: Optional[Path] = typer.Option(None, help="Folder holding fsdd/ and speech_commands_v0.02_test/."),
):
    """Evaluate a model on every held-out set and write MODEL_CARD.md and metrics.json beside it."""
    from ..asr.model_card import write_model_card

    path = write_model_card(model, data_root)
    out.print(f"wrote {path}")


PAPERS = ("jayashankar2020", "daubener2020")


@app.command()
@friendly_errors
def reproduce(
    paper: str = typer.Argument(..., help="jayashankar2020 (CTC, dropout uncertainty) or daubener2020 (hybrid DNN-HMM)."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder: results.json, tables.md, PNGs (resumable)."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes: a few minutes instead of up to an hour."),
    seed: int = typer.Option(0, help="Random seed."),
    data_root: Optional[Path] = typer.Option(None, help="Folder holding the corpora (default: ../shared/data)."),
    fit_detector: Optional[Path] = typer.Option(
        None, "--fit-detector", help="jayashankar2020 only: afterwards fit a detector from the run's features "
                                     "(model selection on validation sources) and save it here; this is how the "
                                     "shipped detector was made."),
    model: Optional[Path] = typer.Option(None, help="jayashankar2020 only: CTC model folder to attack and "
                                                    "defend (default: the shipped model)."),
    setup: str = typer.Option("mixed", help="jayashankar2020 only: mixed (digit strings and one-word commands, "
                                            "each with a target that fits it) or paper (the paper's one "
                                            "41-character target; sources of 2.8 s and more)."),
    attacks: Optional[str] = typer.Option(None, help="jayashankar2020 only: comma-separated subset of "
                                                     "cw,dr,nrr,ia,us (dr is needed); other columns stay empty."),
    attacks_dir: Optional[Path] = typer.Option(None, help="jayashankar2020 only: where the attack folders live "
                                                          "(default: OUT/attacks); runs can share them."),
    recognizer_spec: Optional[str] = typer.Option(None, "--recognizer", help="jayashankar2020 only: " + RECOGNIZER_HELP),
    executor: str = cli_options.EXECUTOR,
    workers: int = cli_options.WORKERS,
    address: Optional[str] = cli_options.ADDRESS,
    device: str = cli_options.DEVICE,
    gpus_per_worker: float = cli_options.GPUS_PER_WORKER,
):
    """Reproduce a paper's tables and figures with one command; re-running resumes."""
    _setup_logging(False)
    root = data_root or recipes.default_data_root()
    if paper == "daubener2020":
        from ..experiments import daubener2020 as experiment
    elif paper == "jayashankar2020":
        from ..experiments import jayashankar2020 as experiment
    else:
        raise typer.BadParameter(f"unknown paper {paper!r}; choose from {', '.join(PAPERS)}")
    if paper != "jayashankar2020":
        given = {"--fit-detector": fit_detector, "--model": model, "--attacks": attacks, "--attacks-dir": attacks_dir,
                 "--setup": None if setup == "mixed" else setup, "--recognizer": recognizer_spec,
                 "--executor": None if executor == "local" else executor, "--address": address,
                 "--device": None if device == "cpu" else device}
        misplaced = [name for name, value in given.items() if value is not None]
        if misplaced:
            raise typer.BadParameter(f"{', '.join(misplaced)}: jayashankar2020 only")
    # daubener2020 trains its own models and has one setup
    options = {}
    if model is not None and recognizer_spec is not None:
        raise ConfigError("give --model or --recognizer, not both (--model PATH is --recognizer ctc:PATH)")
    model = recognizer_spec or model
    if paper == "jayashankar2020":
        options = {"model": model, "setup": setup, "attacks_dir": attacks_dir,
                   "attacks": [a.strip() for a in attacks.split(",") if a.strip()] if attacks else None,
                   "executor": cli_options.executor_from(executor, workers, address, device, gpus_per_worker)}
    experiment.run(out_dir, quick=quick, data_root=root, seed=seed, **options)
    tables = Path(out_dir) / "tables.md"
    if tables.exists():
        out.print(tables.read_text(encoding="utf-8"), markup=False, highlight=False, soft_wrap=True, emoji=False)
    out.print(f"results in {out_dir}")
    if fit_detector is not None:
        summary = experiment.fit_default_detector(out_dir, fit_detector, model=model)
        aurocs = ", ".join(f"{a} {m['auroc']:.3f}" for a, m in summary["test_at_calibrated_threshold"].items())
        out.print(f"saved a {summary['classifier']} detector to {fit_detector}; held-out AUROC: {aurocs}")


@app.command()
@friendly_errors
def demo(
    out_dir: Path = typer.Option(Path("asrguard-demo"), "--out", help="Folder for the WAVs, the PNG and demo.json."),
    target: Optional[str] = typer.Option(None, help="The attacker's command [default: 'delete all files'; with "
                                                     "--recognizer whisper:tiny.en, 'okay google unlock phone and "
                                                     "delete files'] (replaced by a shorter one if it does not fit)."),
    seed: int = typer.Option(0, help="Random seed."),
    recognizer_spec: Optional[str] = typer.Option(None, "--recognizer", help=RECOGNIZER_HELP + " whisper:tiny.en "
                                                                           "uses its shipped detector and a bundled "
                                                                           "English sentence; others need --detector."),
    detector: Optional[Path] = typer.Option(None, help="Detector folder (default: the shipped detector)."),
    audio: Optional[Path] = typer.Option(None, "--input", help="Your own benign audio file instead of the "
                                                               "bundled example."),
):
    """One-minute attack-and-detect demo: CW on the bundled example, then the shipped detector on both."""
    from ..experiments.demo import run_demo

    run_demo(out_dir, target=target, seed=seed, verbose=True, detector=detector,
             recognizer=recognizer_spec, audio=audio)


def _register_stage_commands() -> None:
    # the attack, detect, data and serve commands live in their own modules of this package
    register_attack_commands(app)
    register_detect_commands(app)
    register_compare_command(app)
    register_data_commands(app, data_app)
    register_serve_command(app)


_register_stage_commands()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

