"""``asrguard compare-detectors``: a thin shell over :func:`asrguard.experiments.comparison.compare`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from ..errors import ConfigError

# Imports inside functions keep `asrguard --help` fast (the comparison imports torch and scikit-learn);
# `from . import` inside register is a cycle (the package imports this module).


def _adaptive_option(values: list[str]) -> dict[str, list[str]]:
    chosen: dict[str, list[str]] = {}
    for value in values:
        kind, sep, folder = value.partition("=")
        if not sep or not kind or not folder:
            raise ConfigError(f"--adaptive {value!r}: write KIND=FOLDER, e.g. transform=runs/bpda/bpda-transform-1a2b")
        chosen.setdefault(kind.strip(), []).append(folder.strip())
    return chosen


def _settings_option(values: list[str], parse) -> dict[str, dict]:
    chosen: dict[str, list[str]] = {}
    for value in values:
        kind, sep, pair = value.partition(".")
        if not sep or not kind or "=" not in pair:
            raise ConfigError(f"--setting {value!r}: write KIND.KEY=VALUE, e.g. transform.measure=likelihood")
        chosen.setdefault(kind.strip(), []).append(pair)
    return {kind: parse(pairs) for kind, pairs in chosen.items()}


def register(app: typer.Typer) -> None:
    """Add ``compare-detectors`` to the ``asrguard`` app."""
    from . import _setup_logging, friendly_errors

    @app.command("compare-detectors")
    @friendly_errors
    def compare_detectors(
        out_dir: Path = typer.Option(..., "--out", help="Output folder: results.json, tables.md, cached features "
                                                        "(resumable)."),
        run_dir: Optional[Path] = typer.Option(
            None, "--run", help="A finished `asrguard reproduce jayashankar2020` folder whose attacks and split "
                                "are compared on (default: make one in OUT/run)."),
        kinds: str = typer.Option("all", "--detectors", help="Comma-separated detector kinds to compare, or all "
                                                             "(uncertainty, distribution, transform, temporal, "
                                                             "noise-flood, combined)."),
        adaptive: List[str] = typer.Option([], "--adaptive", metavar="KIND=FOLDER", help="KIND=FOLDER: an attack folder of adaptive "
                                                                  "examples made against that detector (repeatable)."),
        craft_adaptive: int = typer.Option(30, "--adaptive-n", help="Run each detector's own adaptive attacker "
                                                                   "(dropout-evasion, bpda-transform, stats-penalty, "
                                                                   "combined-evasion, eot-noise, prefix-consistent) on "
                                                                   "this many test sources (0: none)."),
        adaptive_max_iter: Optional[int] = typer.Option(
            None, "--adaptive-max-iter", help="Steps at most per adaptive example (default: CW's, which also gives "
                                              "its bound and the rest of its schedule)."),
        quick: bool = typer.Option(False, "--quick", help="Without --run: make the --quick reproduction."),
        n_english: int = typer.Option(60, help="Held-out English sentences scored for false alarms (0: none)."),
        n_benign_pool: int = typer.Option(1000, "--benign-pool", help="More held-out benign utterances of the run's "
                                                                     "corpora each speech cell is scored against too "
                                                                     "(a 1 % FPR needs more than ~30 sources; 0: none)."),
        seed: int = typer.Option(0, help="Random seed (detectors, and the run made without --run)."),
        mask_seed: Optional[int] = typer.Option(
            None, "--mask-seed", help="Draw the dropout realisations from this seed instead of the run's (nothing "
                                      "else moves): a fixed-I detector's cells are one draw of its masks. Needs "
                                      "--adaptive-n 0."),
        setting: List[str] = typer.Option([], "--setting", metavar="KIND.KEY=VALUE",
                                          help="A rival or combined detector's setting (repeatable), e.g. "
                                               "transform.measure=likelihood (see docs/detectors.md)."),
    ):
        """Compare every detector on the same attacks: AUROC, TPR at 1 % FPR, false alarms, cost, adaptive."""
        from ..experiments.comparison import DEFAULT_KINDS, compare
        from .detect import parse_settings

        _setup_logging(False)
        chosen = DEFAULT_KINDS if kinds.strip() == "all" else [k.strip() for k in kinds.split(",") if k.strip()]
        compare(out_dir, run_dir=run_dir, kinds=chosen,
                adaptive=_adaptive_option(adaptive), craft_adaptive=craft_adaptive,
                adaptive_max_iter=adaptive_max_iter, quick=quick, seed=seed, n_english=n_english,
                n_benign_pool=n_benign_pool, mask_seed=mask_seed, settings=_settings_option(setting, parse_settings))
        console = Console()
        console.print((out_dir / "tables.md").read_text(encoding="utf-8"), markup=False, highlight=False,
                      soft_wrap=True, emoji=False)
        console.print(f"results in {out_dir}")


__all__ = ["register"]
