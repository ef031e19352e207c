"""``asrguard attack`` and ``asrguard attack-report``: thin shells over :mod:`asrguard.attacks.runner`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from ..errors import ConfigError, DataError

ATTACKS = ("cw", "dr", "nrr", "ia", "us", "universal", "known-mask")
SPEECH_CORPORA = ("fsdd-digits", "speech-commands", "sc-digits", "fsdd-isolated", "english-speech")
URBAN = "urbansound8k"
DEFAULT_CORPUS = {"us": URBAN}
DEFAULT_SPEECH = "fsdd-digits,speech-commands"


@dataclass
class Item:
    id: str
    waveform: np.ndarray
    transcript: str


def make_attack(name: str, recognizer, overrides: dict | None = None):
    """An attack by CLI name with config fields overridden from ``overrides``."""
    from .adaptive import KnownMaskAttack
    from .cw import CWAttack, DRAttack, NRRAttack, USAttack
    from .imperceptible import ImperceptibleAttack
    from .universal import UniversalAttack

    classes = {"cw": CWAttack, "dr": DRAttack, "nrr": NRRAttack, "ia": ImperceptibleAttack, "us": USAttack,
               "universal": UniversalAttack, "known-mask": KnownMaskAttack}
    if name not in classes:
        raise ConfigError(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)}")
    cls = classes[name]
    fields = {f.name: f for f in dataclasses.fields(cls.config_class)}
    values = {}
    for key, raw in (overrides or {}).items():
        if key not in fields:
            raise ConfigError(f"{name} has no setting {key!r}; settings: {', '.join(sorted(fields))}")
        default = fields[key].default
        try:
            if isinstance(default, bool):
                values[key] = str(raw).lower() in ("1", "true", "yes", "on")
            elif isinstance(default, int):
                values[key] = int(raw)
            elif isinstance(default, float):
                values[key] = float(raw)
            else:
                values[key] = raw
        except ValueError:
            raise ConfigError(f"{name}: cannot read {key}={raw!r} as {type(default).__name__}") from None
    return cls(recognizer, cls.config_class(**values))


def load_items(corpora: list[str], n: int, seed: int, root: Path | None = None, sample_rate: int = 16_000,
               max_seconds: float | None = None, min_seconds: float | None = None) -> list[Item]:
    """``n`` held-out items split evenly over ``corpora`` (ids prefixed with the corpus name).

    ``max_seconds`` keeps only utterances up to that length (drawn, seeded, from the whole
    held-out set): attack cost grows with length, and so does the speech the perturbation
    has to overwrite. ``min_seconds`` keeps only utterances at least that long (a long target
    such as the paper's needs room).
    """
    from ..asr.recipes import default_data_root, evaluation_set

    root = Path(root) if root is not None else default_data_root()
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    shares = [n // len(corpora) + (1 if i < n % len(corpora) else 0) for i in range(len(corpora))]
    items: list[Item] = []
    for corpus, share in zip(corpora, shares):
        if share == 0:
            continue
        if corpus == URBAN:
            items += _urban_items(root, share, seed, sample_rate, max_seconds, min_seconds)
            continue
        if corpus not in SPEECH_CORPORA:
            raise ConfigError(f"unknown corpus {corpus!r}; choose from {', '.join(SPEECH_CORPORA + (URBAN,))}")
        if max_seconds is None and min_seconds is None:
            pool = evaluation_set(corpus, "test", root, limit=share, seed=seed)
        else:
            pool = [u for u in evaluation_set(corpus, "test", root, seed=seed)
                    if _within(len(u.waveform) / sample_rate, min_seconds, max_seconds)]
            rng = np.random.default_rng(seed)
            pool = [pool[i] for i in sorted(rng.choice(len(pool), min(share, len(pool)), replace=False))]
        for u in pool:
            items.append(Item(f"{corpus}:{u.id}", u.waveform, u.transcript))
    return items


def _within(seconds: float, min_seconds: float | None, max_seconds: float | None) -> bool:
    return (min_seconds is None or seconds >= min_seconds) and (max_seconds is None or seconds <= max_seconds)


def _urban_items(root: Path, n: int, seed: int, sample_rate: int, max_seconds: float | None = None,
                 min_seconds: float | None = None) -> list[Item]:
    """``n`` carriers from the held-out UrbanSound8K folds (training may use the others as non-speech)."""
    from ..asr.recipes import urbansound_records
    from ..audio import load_audio

    records = [r for r in urbansound_records(root, "test") if _within(r.duration, min_seconds, max_seconds)]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(records), min(n, len(records)), replace=False))
    items = []
    for i in chosen:
        waveform, _ = load_audio(records[i].path, sample_rate)
        items.append(Item(records[i].id, waveform, ""))
    return items


def input_items(paths: list[Path], sample_rate: int) -> list[Item]:
    """The user's own audio (files or folders) as attack items, ids ``input:<path>``."""
    from ..audio import load_audio
    from ..detect.cli import collect_audio

    items = []
    for path in collect_audio(paths, "input"):
        waveform, _ = load_audio(path, sample_rate)
        items.append(Item(f"input:{path}", waveform, ""))
    return items


def read_target_table(path: Path) -> dict[str, str]:
    """``file,target`` rows (a header line is allowed) as ``{item id: target}`` for :func:`input_items`."""
    import csv

    table = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            if not row or row[0].strip().lower() in ("file", "path"):
                continue
            if len(row) < 2 or not row[1].strip():
                raise DataError(f"{path}: each row needs a file and a target, got {row}")
            file = Path(row[0].strip())
            if not file.is_absolute():
                file = path.parent / file
            table[f"input:{file}"] = row[1].strip()
    if not table:
        raise DataError(f"{path}: no file,target rows")
    return table


def _parse_sets(values: list[str] | None) -> dict:
    out = {}
    for value in values or []:
        if "=" not in value:
            raise ConfigError(f"--set expects KEY=VALUE, got {value!r}")
        key, raw = value.split("=", 1)
        out[key.strip().replace("-", "_")] = raw.strip()
    return out


def register(app: typer.Typer) -> None:
    """Add ``attack`` and ``attack-report`` to the ``asrguard`` app."""
    from ..cli import RECOGNIZER_HELP, _load_recognizer as load_recognizer, friendly_errors

    @app.command("attack")
    @friendly_errors
    def attack_command(
        attack: str = typer.Option(..., "--attack", help="cw | dr | nrr | ia | us | universal | known-mask "
                                                          "(adaptive: knows the detector's dropout seed)"),
        out: Path = typer.Option(..., "--out", help="Output folder (re-running resumes it)."),
        corpus: Optional[str] = typer.Option(
            None, help="Comma-separated held-out sets: fsdd-digits, speech-commands, sc-digits, fsdd-isolated, "
                       "english-speech, urbansound8k (default: urbansound8k for us, else fsdd-digits and speech-commands)."),
        n: int = typer.Option(100, help="Utterances to attack (split evenly over the corpora)."),
        batch_size: int = typer.Option(16, "--batch-size", help="Utterances optimised together."),
        seed: int = typer.Option(0, help="Seed for item selection, targets and the attack."),
        model: Optional[Path] = typer.Option(None, help="Model directory (default: the shipped model)."),
        recognizer_spec: Optional[str] = typer.Option(None, "--recognizer", help=RECOGNIZER_HELP),
        targets: str = typer.Option("mixed", help="Target kind: mixed | paper | commands | digits."),
        inputs: Optional[List[Path]] = typer.Option(None, "--input", help="Your own audio: files or folders "
                                                                           "(repeatable); replaces --corpus."),
        target: Optional[str] = typer.Option(None, help="The target transcript for every input, e.g. "
                                                        "'open the door' (replaces --targets)."),
        target_table: Optional[Path] = typer.Option(None, "--target-csv", help="CSV of file,target: a target per "
                                                                                "--input file."),
        max_fill: float = typer.Option(0.2, help="Largest target length as a fraction of the output frames "
                                                 "(0.2: about 10 characters per second)."),
        max_seconds: Optional[float] = typer.Option(None, help="Only utterances up to this many seconds."),
        min_seconds: Optional[float] = typer.Option(None, help="Only utterances of at least this many seconds."),
        n_fit: int = typer.Option(64, help="universal: inputs the perturbation is fitted on (not evaluated)."),
        data_root: Optional[Path] = typer.Option(None, help="Folder holding the corpora (default: ../shared/data)."),
        settings: Optional[List[str]] = typer.Option(None, "--set", help="Attack setting KEY=VALUE, repeatable "
                                                                          "(e.g. --set tau_db=30)."),
        progress: bool = typer.Option(True, help="Show a progress bar."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON at the end."),
    ):
        """Craft adversarial examples: WAVs plus a resumable JSONL manifest in --out."""
        import torch

        from .runner import report as make_report, run_attack
        from .targets import FixedTargets, TargetSampler

        if attack not in ATTACKS:
            raise ConfigError(f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")
        torch.manual_seed(seed)
        recognizer = load_recognizer(model, recognizer_spec)
        overrides = {"seed": str(seed), **_parse_sets(settings)}
        attacker = make_attack(attack, recognizer, overrides)
        corpora = [c.strip() for c in (corpus or DEFAULT_CORPUS.get(attack, DEFAULT_SPEECH)).split(",") if c.strip()]
        meta = {"corpora": corpora, "n": n, "seed": seed, "max_seconds": max_seconds, "targets": targets, "max_fill": max_fill,
                "model": recognizer_spec or (str(model) if model else "shipped"),
                "model_checksum": recognizer.fingerprint()}
        if min_seconds is not None:
            meta["min_seconds"] = min_seconds
        if inputs:
            if attack == "universal":
                raise ConfigError("universal fits one perturbation on a held-out corpus; use --corpus with it")
            if target is None and target_table is None:
                raise ConfigError("--input needs --target TEXT or --target-csv FILE (the attacker's transcript)")
            items = input_items(list(inputs), recognizer.sample_rate)
            meta.update(corpora=["input"], inputs=[str(p) for p in inputs])
        elif attack == "universal":
            items = load_items(corpora, n + n_fit, seed, data_root, recognizer.sample_rate, max_seconds, min_seconds)
            order = np.random.default_rng(seed).permutation(len(items))
            fit_items = [items[i] for i in order[:n_fit]]
            items = [items[i] for i in order[n_fit:]]
            meta["fit_ids"] = [it.id for it in fit_items]
            _fit_universal(attacker, fit_items, out)
            meta["fit"] = attacker.fit_stats
        else:
            items = load_items(corpora, n, seed, data_root, recognizer.sample_rate, max_seconds, min_seconds)
        if target is not None or target_table is not None:
            meta.update(target=target, target_csv=str(target_table) if target_table else None)
            sampler = FixedTargets(target, read_target_table(target_table) if target_table else {})
        else:
            sampler = TargetSampler(targets, seed=seed, max_fill=max_fill)
        run_attack(attacker, items, out, sampler=sampler, batch_size=batch_size, progress=progress, meta=meta)
        summary = make_report(out)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            _print_report(summary)

    @app.command("attack-report")
    @friendly_errors
    def attack_report_command(
        directory: Path = typer.Argument(..., help="Folder written by `asrguard attack`."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ):
        """Success rate, distortion, robustness to dropout and cost of an attack folder."""
        from .runner import report as make_report

        summary = make_report(directory)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            _print_report(summary)


def _fit_universal(attacker, fit_items: list[Item], out: Path) -> None:
    """Fit δ once; a resumed run loads it from ``out/universal_delta.npy``."""
    from ..fileio import atomic_write

    path = Path(out) / "universal_delta.npy"
    info = Path(out) / "universal_delta.json"
    if path.exists() and info.exists():
        saved = json.loads(info.read_text())
        if saved.get("config_hash") == attacker.config_hash:
            attacker.set_delta(np.load(path), saved.get("eps"))
            attacker.fit_stats = saved.get("fit", {})
            return
    if not fit_items:
        raise DataError("universal: no inputs left to fit the perturbation on; raise --n-fit")
    attacker.fit([it.waveform for it in fit_items])
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: np.save(tmp, attacker.delta), suffix=".npy")
    atomic_write(info, lambda tmp: Path(tmp).write_text(json.dumps(
        {"config_hash": attacker.config_hash, "eps": attacker.eps, "fit": attacker.fit_stats}, indent=2)))


def _print_report(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary.get('attack')} ({summary.get('config_hash')})", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if key in ("attack", "config_hash"):
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}: {v:.3g}" for k, v in value.items())
        table.add_row(key, str(value))
    Console().print(table)


__all__ = ["ATTACKS", "Item", "load_items", "make_attack", "register"]
