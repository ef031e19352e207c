"""The Däubener et al. (2020) reproduction's report: ``tables.md`` and the figures (Figs. 1-4).

Example:
    >>> [level_label(x) for x in (1.0, 0.25)]
    ['1', '1/4']
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from ...evaluate.tables import AurocCells, markdown_table, number_cell
from ...fileio import atomic_write
from .config import (
    BAR_AUROC, BAR_EPS, LABELS, MEASURE_LABELS, MODEL_ORDER, PAPER, TABLE_MEASURES, AttackSpec, paper_value,
)


def level_label(level: float) -> str:
    """An audio level as a fraction of our recordings' own level.

    Example:
        >>> [level_label(x) for x in (1.0, 0.5, 0.25, 0.125)]
        ['1', '1/2', '1/4', '1/8']
    """
    return str(Fraction(level).limit_denominator(1024))


def write_figures(out_dir: Path, results: dict, headline_scores: dict) -> list[str]:
    """Figs. 1-3 (paper's attack, headline level) and the audio-level sweep; ``headline_scores[(name, eps)]``
    holds the attacked audio's entropy scores.

    Example:
        >>> write_figures(Path("runs/d"), results, headline_scores)[0]  # doctest: +SKIP
        'fig1_accuracy_vs_eps.png'
    """
    # matplotlib is heavy: imported only when figures are drawn (the Agg backend chosen before pyplot loads)
    import matplotlib

    matplotlib.use("Agg")
    # heavy, as above; evaluate.plots imports pyplot too
    import matplotlib.pyplot as plt
    from ...evaluate.plots import distinct_styles

    written = []
    sweep = results["fig1"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for name, style in zip(MODEL_ORDER, distinct_styles(len(MODEL_ORDER))):
        eps = [p["eps"] for p in sweep[name]]
        axes[0].plot(eps, [p["accuracy_original"] for p in sweep[name]], label=LABELS[name], **style)
        axes[1].plot(eps, [p["accuracy_target"] for p in sweep[name]], label=LABELS[name], **style)
    level = level_label(results["headline"]["level"])
    for ax, title in zip(axes, ("w.r.t. original transcription", "w.r.t. target transcription")):
        ax.set_title(f"Word accuracy {title}", fontsize=10)
        ax.set_xlabel(f"ε (L∞, float scale); audio at level {level}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("word accuracy")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, out_dir / "fig1_accuracy_vs_eps.png"))

    for eps_name, per_model in results["detection"].items():
        eps = float(eps_name)
        fig, axes = plt.subplots(1, len(MODEL_ORDER), figsize=(3.6 * len(MODEL_ORDER), 3.4))
        for ax, name in zip(axes, MODEL_ORDER):
            benign = results["benign_entropy"][name]
            adv = headline_scores[(name, eps_name)]
            bins = np.linspace(min(min(benign), min(adv)), max(max(benign), max(adv)), 40)
            ax.hist(benign, bins=bins, alpha=0.6, label="benign")
            ax.hist(adv, bins=bins, alpha=0.6, label="adversarial")
            ax.set_title(f"{LABELS[name]}, ε={eps:.2f}", fontsize=9)
            ax.set_xlabel("max-over-frames entropy (nats)")
        axes[0].set_ylabel("utterances")
        axes[0].legend()
        fig.tight_layout()
        written.append(_save(fig, out_dir / f"fig2_entropy_histograms_eps{eps:.2f}.png"))

        fig, axes = plt.subplots(1, len(MODEL_ORDER), figsize=(3.6 * len(MODEL_ORDER), 3.6))
        for ax, name in zip(axes, MODEL_ORDER):
            per_measure = per_model[name]
            # measures often give the same curve (all near the top-left corner): the styles keep them apart
            for (m, cell), style in zip(per_measure.items(), distinct_styles(len(per_measure))):
                ax.plot(cell["roc"]["fpr"], cell["roc"]["tpr"], label=f"{MEASURE_LABELS[m]} ({cell['auroc']:.3f})",
                        **style)
            ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
            entropy = per_measure["entropy"]
            ax.set_title(f"{LABELS[name]}, ε={eps:.2f} (n={entropy['n_adversarial']}/{entropy['n_benign']})",
                         fontsize=9)
            ax.set_xlabel("false positive rate")
            ax.legend(fontsize=7, loc="lower right")
        axes[0].set_ylabel("true positive rate")
        fig.tight_layout()
        written.append(_save(fig, out_dir / f"fig3_roc_eps{eps:.2f}.png"))

    levels = results["sweep"]["levels"]
    eps_names = list(results["detection"])
    fig, axes = plt.subplots(2, len(eps_names), figsize=(5 * len(eps_names), 7), squeeze=False)
    for j, eps_name in enumerate(eps_names):
        for name, style in zip(MODEL_ORDER, distinct_styles(len(MODEL_ORDER))):
            rows = [results["sweep"]["tables"][f"{x:g}"][eps_name][name] for x in levels]
            value = np.array([r["auroc"]["entropy"] for r in rows])
            ci = np.array([[np.nan if c is None else c for c in r["auroc_ci"]["entropy"]] for r in rows])
            axes[0, j].errorbar(levels, value, yerr=np.abs(ci.T - value), capsize=3, label=LABELS[name], **style)
            axes[1, j].plot(levels, [r["accuracy_target"] for r in rows], label=LABELS[name], **style)
        axes[0, j].axhline(BAR_AUROC, color="grey", lw=0.8, ls="--")
        axes[0, j].set_title(f"Entropy AUROC, ε = {eps_name} ({results['headline']['attack']['name']} attack)",
                             fontsize=10)
        axes[1, j].set_title(f"Word accuracy w.r.t. the target, ε = {eps_name}", fontsize=10)
        for ax in axes[:, j]:
            ax.set_xscale("log", base=2)
            ax.set_xticks(levels, [level_label(x) for x in levels])
            ax.set_xlabel("audio level (peak scale factor)")
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("AUROC (95 % bootstrap interval)")
    axes[1, 0].set_ylabel("word accuracy")
    axes[0, -1].legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, out_dir / "fig4_audio_level_sweep.png"))
    return written


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt  # heavy: only when figures are drawn

    try:  # not evaluate.plots' writer: these figures are saved without a tight bounding box
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110), suffix=".png")
    finally:
        plt.close(fig)
    return path.name


def _effect_cells(row: dict) -> list[str]:
    """What the attack did, beside its AUROCs: accuracies against the original and the target, and SNR."""
    return [number_cell(row["accuracy_original"]), number_cell(row["accuracy_target"]),
            number_cell(row["target_exact_match"]), f"{row['snr_db_mean']:.1f}"]


EFFECT_HEADERS = ("acc. vs original", "acc. vs target", "target exact", "SNR (dB)")


def _rows_table(aurocs: AurocCells, headers: Sequence[str], rows: Sequence[tuple[Sequence[str], dict]]) -> list[str]:
    """A table of attack rows: the given leading cells, the attack's effect, then AUROC per measure."""
    table_rows = []
    for lead, row in rows:
        cells = [aurocs.cell(row["auroc"].get(m), row["auroc_ci"].get(m), row["n_adversarial"], row["n_benign"])
                 for m in TABLE_MEASURES]
        table_rows.append([*lead, *_effect_cells(row), *cells])
    header = [*headers, *EFFECT_HEADERS, *(MEASURE_LABELS[m] for m in TABLE_MEASURES)]
    return markdown_table(header, table_rows) + [""]


def tables_markdown(results: dict) -> str:
    """Tables 1-3 beside the paper's, the audio-level sweep, the other attacks, Fig. 1's numbers and the bars.

    Example:
        >>> print(tables_markdown(json.loads(Path("runs/daubener2020/results.json").read_text())))  # doctest: +SKIP
        # Däubener et al. (2020) reproduction
        ...
    """
    s = results["settings"]
    head = results["headline"]
    level = level_label(head["level"])
    attack = AttackSpec(**head["attack"])
    title = [f"# Däubener et al. (2020) reproduction{' (quick)' if s['quick'] else ''}", ""]
    aurocs = AurocCells()
    # the training set holds TTS voices only where an engine was installed: it is larger by their utterances
    plain = (s["n_mixed"] + s["n_speech_commands"]) * (1 + s["augment_copies"])
    sizes = [m.get("n_train_utterances", plain) for m in results.get("models", {}).values()]
    tts = "+ TTS voices in training" if any(n > plain for n in sizes) else "no TTS voices: no engine installed"
    averaged = head["ensemble_attack"] == "average"
    lines = [f"Data: connected digits (1-5) from FSDD + Speech Commands digit words ({tts}); "
             f"held-out speakers: FSDD `theo` and the Speech Commands test speakers. Paper: TIDIGITS. "
             f"Benign fit set {s['n_fit']}, benign eval set {s['n_eval']} utterances. "
             f"Headline attack (the one the paper's code ran): PGD, {attack.describe()}, L∞ on the [-1, 1] scale, "
             f"toward seeded random digit strings force-aligned onto the original audio; the deep ensemble "
             f"through its {head['ensemble_attack']} output"
             f"{' (the averaged 5-member output, as the reference code)' if averaged else ''}"
             f", MC dropout and the BNNs one fresh draw per step. Audio level: every held-out utterance is "
             f"multiplied by {level} before it is attacked (ε is absolute and the front end peak-normalises, "
             f"so this makes ε {20 * math.log10(1 / head['level']):.0f} dB larger relative to the speech and leaves "
             f"benign scores unchanged). The headline level is a setting (`headline_level`) fixed before the "
             f"run; the sweep below reports every level. "
             f"Stages took {results['timing']['pipeline_seconds'] / 60:.1f} min in all; this call "
             f"{results['timing']['total_seconds'] / 60:.1f} min wall, "
             f"{results['timing']['cpu_seconds'] / 60:.1f} min CPU "
             f"(load average at start {results['timing']['load_average_start']}, "
             f"at end {results['timing']['load_average_end']}).", ""]
    lines += ["## Table 1: word accuracy on benign held-out utterances", "",
              *markdown_table(["", *(LABELS[k] for k in MODEL_ORDER)],
                              [["ours", *(number_cell(results["table1"][k]["accuracy"]) for k in MODEL_ORDER)],
                               ["paper", *(number_cell(paper_value("table1", k)) for k in MODEL_ORDER)]])]
    lines += ["", "Both BNN rows stand against the paper's BNN (matrix-Gaussian posterior).", ""]
    for number, eps in (("2", 0.05), ("3", 0.02)):
        name = f"{eps:.2f}"
        if name not in head["tables"]:
            continue
        rows = []
        for kind in MODEL_ORDER:
            row = head["tables"][name][kind]
            cells = []
            for m in TABLE_MEASURES:
                ours = aurocs.cell(row["auroc"].get(m), row["auroc_ci"].get(m), row["n_adversarial"], row["n_benign"])
                cells.append(f"{ours} / {number_cell(paper_value(f'table{number}', kind, m))}"
                             if m != "akld_pairs" else ours)
            rows.append([LABELS[kind], *cells, *_effect_cells(row)])
        lines += [f"## Table {number}: AUROC at ε = {eps}, the paper's attack, audio level {level} (ours / paper)", "",
                  *markdown_table(["", *(MEASURE_LABELS[m] for m in TABLE_MEASURES), *EFFECT_HEADERS], rows)]
        lines += ["", "aKLD (pairs) is the order-independent form (not in the paper). SNR: "
                      "10·log10(Σx²/Σδ²) of each attacked utterance, averaged.", ""]

    sweep = results["sweep"]
    lines += ["## Audio-level sweep: AUROC, accuracies and SNR under the paper's attack at every level", "",
              f"The same utterances multiplied by each level, then attacked ({attack.describe()}); the benign "
              f"side is the same at every level (peak normalisation). n = {s['n_eval']} adversarial examples at "
              f"the headline level {level}, {s['n_level']} at the others. Median peak: of the scaled originals.", ""]
    rows = []
    for lv in sweep["levels"]:
        for eps_name in head["tables"]:
            for kind in MODEL_ORDER:
                row = sweep["tables"][f"{lv:g}"][eps_name][kind]
                rows.append(([level_label(lv), f"{row['peak_median']:.3f}", eps_name, LABELS[kind]], row))
    lines += _rows_table(aurocs, ("level", "median peak", "ε", "model"), rows)
    meeting = [level_label(lv) for lv in sweep.get("levels_meeting_bar", [])]
    lines += [f"Levels at which every model reaches entropy AUROC ≥ {BAR_AUROC} at ε = {BAR_EPS}: "
              + (", ".join(meeting) or "none") + ".", ""]
    lines += ["![audio-level sweep](fig4_audio_level_sweep.png)", ""]

    conv = results.get("converged_attack")
    if conv:
        spec = AttackSpec(**conv["attack"])
        lines += [f"## AUROC under the converged attack ({spec.describe()}), audio level "
                  f"{level_label(conv['level'])}", "",
                  "Our earlier headline attack: smaller steps from δ = 0, which converge to the target and leave "
                  "the models confidently wrong. Entropy detection fails against it.", ""]
        rows = [([eps_name, LABELS[kind]], conv["tables"][eps_name][kind])
                for eps_name in conv["tables"] for kind in MODEL_ORDER]
        lines += _rows_table(aurocs, ("ε", "model"), rows)

    variants = results.get("ensemble_variants")
    if variants:
        lines += [f"## AUROC of the deep ensemble attacked two ways (the paper's attack, audio level "
                  f"{level_label(variants['level'])})", "",
                  "average: the gradient of the 5-member averaged output (the reference code); member: one seeded "
                  "random member per step.", ""]
        rows = [([eps_name, variant], row) for eps_name, per in variants["tables"].items()
                for variant, row in per.items()]
        lines += _rows_table(aurocs, ("ε", "ensemble attack"), rows)

    eps_list = [p["eps"] for p in results["fig1"]["fnn"]]
    rows = []
    for j, eps in enumerate(eps_list):
        row = []
        for kind in MODEL_ORDER:
            p = results["fig1"][kind][j]
            row.append(f"{number_cell(p['accuracy_original'])} / {number_cell(p['accuracy_target'])} (n={p['n']})")
        rows.append([f"{eps:.2f}", *row])
    lines += [f"## Fig. 1: word accuracy under the paper's attack, audio level {level} (vs original / vs target)", "",
              *markdown_table(["ε", *(LABELS[k] for k in MODEL_ORDER)], rows)]
    lines += ["", "Target accuracy averaged over ε ≥ 0.05: " + ", ".join(
        f"{LABELS[k]} {number_cell(results['fig1_summary'][k]['target_accuracy_eps_ge_0.05'])}" for k in MODEL_ORDER) + ". "
        + results["fig1_summary"]["statement"], "", f"Paper: {PAPER['fig1']}.", ""]
    lines += ["## Bars", ""]
    for bar in results["bars"]:
        value = bar["value"]
        if "AUROC" in bar["name"]:
            value = (aurocs.cell(bar["value"], bar.get("auroc_ci"), bar.get("n_adversarial"), bar.get("n_benign"))
                     + f", {bar['value']:.4f} unrounded")
        verdict = "reported, not a bar" if bar["pass"] is None else ("PASS" if bar["pass"] else "FAIL")
        lines.append(f"- {bar['name']}: {value} — {verdict}")
    lines.append("")
    # the banner goes on top but needs every AUROC cell counted first
    return "\n".join(title + aurocs.banner(quick=bool(s["quick"])) + lines)


__all__ = ["EFFECT_HEADERS", "level_label", "tables_markdown", "write_figures"]
