"""``asrguard attack`` and ``asrguard attack-report``: thin shells over :mod:`asrguard.attacks.runner`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from ..attacks.factory import ATTACKS, make_attack
from ..attacks.sources import DEFAULT_CORPUS, DEFAULT_SPEECH, input_items, load_items, read_target_table
from ..data.records import Utterance
from ..errors import ConfigError, DataError
from ..fileio import atomic_write
from . import options

# Imports inside functions keep `asrguard --help` fast (the attack runner imports torch);
# `from . import` inside register is a cycle (the package imports this module).


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
    from . import RECOGNIZER_HELP, _load_recognizer as load_recognizer, friendly_errors

    @app.command("attack")
    @friendly_errors
    def attack_command(
        attack: str = typer.Option(..., "--attack", help="cw | dr | nrr | ia | us | universal | known-mask "
                                                          "(adaptive: knows the detector's dropout seed) | "
                                                          "eot-dropout | dropout-evasion (--set detector=DIR) | "
                                                          "bpda-transform | stats-penalty | combined-evasion | "
                                                          "eot-noise | prefix-consistent (adaptive to the other "
                                                          "detector families) | pgd "
                                                          "(hybrid recognisers; --set eps, step_size, iterations)"),
        out: Path = typer.Option(..., "--out", help="Output folder (re-running resumes it)."),
        corpus: Optional[str] = typer.Option(
            None, help="Comma-separated held-out sets: fsdd-digits, speech-commands, sc-digits, fsdd-isolated, "
                       "english-speech, urbansound8k (default: urbansound8k for us, else fsdd-digits and speech-commands)."),
        n: int = typer.Option(100, help="Utterances to attack (split evenly over the corpora); with --input, "
                                        "every file given is attacked."),
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
        executor: str = options.EXECUTOR,
        workers: int = options.WORKERS,
        address: Optional[str] = options.ADDRESS,
        device: str = options.DEVICE,
        gpus_per_worker: float = options.GPUS_PER_WORKER,
    ):
        """Craft adversarial examples: WAVs plus a resumable JSONL manifest in --out.

        Items are cut into units of --batch-size (sorted by length, from the whole list); the same
        seed gives the same examples whichever executor runs them and however often a run resumes.
        """
        from ..attacks.runner import report as make_report, run_attack
        from ..attacks.targets import FixedTargets, TargetSampler

        if attack not in ATTACKS:
            raise ConfigError(f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")
        runner = options.executor_from(executor, workers, address, device, gpus_per_worker)
        # no global torch seed: every draw is seeded from --seed (rng.derive), in whichever worker runs it
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
        run_attack(attacker, items, out, sampler=sampler, batch_size=batch_size, progress=progress, meta=meta,
                   executor=runner)
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
        from ..attacks.runner import report as make_report

        summary = make_report(directory)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            _print_report(summary)


def _fit_universal(attacker, fit_items: list[Utterance], out: Path) -> None:
    """Fit δ once; a resumed run loads it from ``out/universal_delta.npy``."""
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


__all__ = ["register"]
