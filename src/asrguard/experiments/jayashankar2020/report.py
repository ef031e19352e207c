"""The Jayashankar et al. (2020) reproduction's report: ``tables.md`` and the PNG figures.

Example:
    >>> text = tables_markdown(json.loads(Path("runs/jayashankar2020/results.json").read_text()))  # doctest: +SKIP
    >>> text.splitlines()[0]  # doctest: +SKIP
    '# Jayashankar et al. (2020) reproduction (full run)'
"""

from __future__ import annotations

from pathlib import Path

from ...evaluate.tables import AurocCells, markdown_table, number_cell
from .config import COLUMNS, EXTRA_ROWS, PAPER, PAPER_ROWS, SPEECH_ATTACKS, Settings


def write_figures(out_dir: Path, sets: dict, cells: dict, settings: Settings) -> list[str]:
    """Fig. 1 (mean uncertainty distributions), entropy histograms and ROC curves; the paths written.

    Example:
        >>> write_figures(Path("runs/j"), sets, cells, settings)  # doctest: +SKIP
        ['runs/j/fig1_mean_uncertainty_distribution.png', 'runs/j/entropy_histograms.png', ...]
    """
    from ...evaluate import plots  # matplotlib is heavy: imported only when figures are drawn

    pm, pl = settings.p_main, settings.p_low
    panels = {}
    for label, key in ((f"Original, p={pl:g}", ("benign", pl)), (f"CW, p={pl:g}", ("cw", pl)),
                       (f"Original, p={pm:g}", ("benign", pm)), (f"CW, p={pm:g}", ("cw", pm)),
                       (f"DR, p={pm:g}", ("dr", pm)), (f"NRR, p={pm:g}", ("nrr", pm)), (f"IA, p={pm:g}", ("ia", pm)),
                       (f"UrbanSound original, p={pm:g}", ("benign-us", pm)), (f"US, p={pm:g}", ("us", pm))):
        s = sets.get(key)
        if s is not None and len(s):
            panels[label] = s.table["char_hist"]
    written = []
    if panels:
        written.append(str(plots.plot_mean_distributions(panels, out_dir / "fig1_mean_uncertainty_distribution.png")))
    entropy = {label: sets[key].table["entropy"][:, 0] for label, key in
               (("original", ("benign", pm)), ("CW", ("cw", pm)), ("DR", ("dr", pm)), ("NRR", ("nrr", pm)),
                ("IA", ("ia", pm)), ("UrbanSound original", ("benign-us", pm)), ("US", ("us", pm)))
               if key in sets and len(sets[key])}
    if entropy:
        written.append(str(plots.plot_histograms(entropy, out_dir / "entropy_histograms.png",
                                                 xlabel="entropy of the mean posterior (max over frames)",
                                                 title=f"Entropy, I={settings.n_realizations}, p={pm:g}")))
    curves = {col: (m["char-svm4"]["_labels"], m["char-svm4"]["_scores"]) for col, m in cells.items()
              if "_scores" in m.get("char-svm4", {})}
    if curves:
        written.append(str(plots.plot_roc_curves(curves, out_dir / "roc_char_svm4.png",
                                                 title="P^char SVM-4 (trained on DR; US on UrbanSound)")))
    dr = cells.get("DR", {})
    curves = {name: (m["_labels"], m["_scores"]) for name, m in dr.items() if "_scores" in m}
    if curves:
        written.append(str(plots.plot_roc_curves(curves, out_dir / "roc_dr_all_classifiers.png",
                                                 title="Every classifier on DR (held-out sources)")))
    return written


def _breakdown(by_group: dict, columns, classifiers, group_label: str, title: str, aurocs: AurocCells) -> list[str]:
    """A Markdown table of ``by_group[column][group][classifier]`` metrics (none when empty)."""
    groups = sorted({g for col in columns for g in by_group.get(col, {})})
    if not groups:
        return []
    rows = []
    for name in classifiers:
        for group in groups:
            row = []
            for col in columns:
                m = by_group.get(col, {}).get(group, {}).get(name)
                row.append("–" if not m or m.get("auroc") is None else
                           f"{aurocs.format(m)} / {100 * m['accuracy']:.1f}")
            rows.append([name, group, *row])
    return [f"## {title}", "", *markdown_table(["classifier", group_label, *columns], rows), ""]


def _model_label(model: str) -> str:
    return "shipped" if model == "shipped" else f"`{model}`"


def _targets_sentence(settings: dict) -> str:
    fill = settings.get("max_fill", 0.2)
    if settings.get("targets") == "paper":
        return (f"Setup `paper`: every source gets the paper's target, so only sources of at least "
                f"{settings.get('min_seconds')} s are used (up to {fill:g} characters per output frame).")
    return (f"Setup `mixed`: targets `{settings.get('targets', 'mixed')}`, sized to each source "
            f"(up to {fill:g} characters per output frame).")


def tables_markdown(results: dict) -> str:
    """The paper's Tables 1 and 2 beside ours (``ours / paper``), TPR at low FPR and the attacks.

    Example:
        >>> print(tables_markdown(results))  # doctest: +SKIP
        # Jayashankar et al. (2020) reproduction (quick run)
        ...
    """
    columns = [c[0] for c in COLUMNS]
    cells = results["cells"]
    size = "quick" if results["settings"]["quick"] else "full"
    done = [a for a in SPEECH_ATTACKS + ("us",) if a in results["attacks"]]
    if len(done) < len(SPEECH_ATTACKS) + 1:
        size += f" sizes; only {', '.join(a.upper() for a in done)}"
    title = [f"# Jayashankar et al. (2020) reproduction ({size} run)", ""]
    aurocs = AurocCells()
    lines = [f"Our setup: {_model_label(results.get('model', 'shipped'))} CTC model "
             f"(sha256 {str(results.get('model_checksum'))[:12]}…), "
             f"{results['split']['n_sources']} held-out speech sources "
             f"({', '.join(results['settings']['corpora'])}), {results['split']['n_urban']} UrbanSound clips, "
             f"I = {results['settings']['n_realizations']} realisations; sources split 70/30 "
             f"({results['split']['n_train_sources']} train / {results['split']['n_test_sources']} test); classifiers "
             f"trained on {results['split']['train_attack'].upper()} examples of the training sources; each test "
             "cell = successful adversarial examples of the test sources + their own benign sources. US: trained "
             "and tested on UrbanSound (70/30 by clip). " + _targets_sentence(results['settings']),
             f"Paper setup: {PAPER['setup']}.", "",
             "Each cell: **ours** / paper. Accuracy uses each classifier's own decision threshold.", ""]

    def table(metric: str, title: str, kind: str, paper: dict | None) -> None:
        cols = columns + (["US (DR-trained)"] if "US (DR-trained)" in cells else [])
        rows = []
        for group, short, name in PAPER_ROWS + EXTRA_ROWS:
            row = []
            for j, col in enumerate(cols):
                ours = cells.get(col, {}).get(name, {})
                text = (aurocs.format(ours, bold=True) if metric == "auroc"
                        else f"**{number_cell(ours.get(metric), percent=kind == 'pct')}**")
                if paper is not None and name in paper and j < len(columns):
                    ref = paper[name][j]
                    text += f" / {ref:.1f}" if kind == "pct" else f" / {ref:.2f}"
                row.append(text)
            rows.append([group, short, *row])
        lines.extend([f"## {title}", "", *markdown_table(["features", "classifier", *cols], rows), ""])

    table("accuracy", "Table 1: detection accuracy [%]", "pct", PAPER["accuracy"])
    table("auroc", "Table 2: AUROC", "auc", PAPER["auroc"])
    table("tpr_at_1pct_fpr", "TPR [%] at 1 % FPR (ours only)", "pct", None)
    table("tpr_at_5pct_fpr", "TPR [%] at 5 % FPR (ours only)", "pct", None)
    lines += _breakdown(results.get("cells_by_corpus", {}), columns, ("char-svm4", "combined", "all-svm"), "corpus",
                        "By source corpus (AUROC / accuracy %), same classifiers and test sets", aurocs)
    lines += _breakdown(results.get("cells_by_target_length", {}), columns, ("char-svm4", "all-svm"), "targets",
                        "By target length (AUROC / accuracy %): adversarial examples split by target, "
                        "scored against all benign sources of the cell", aurocs)
    n_row = []
    for col in columns + ["US (DR-trained)"]:
        m = cells.get(col, {}).get("char-svm4", {})
        n_row.append(f"{m.get('n_benign', 0)} + {m.get('n_adversarial', 0)}")
    lines += ["## Test-set sizes (benign + adversarial)", "",
              *markdown_table(columns + ["US (DR-trained)"], [n_row]), ""]
    attack_rows = []
    for name, a in results["attacks"].items():
        db = "–" if a["mean_db_x_delta"] is None else f"{a['mean_db_x_delta']:.1f}"
        snr = "–" if a["median_snr_db"] is None else f"{a['median_snr_db']:.1f}"
        attack_rows.append([name.upper(), str(a["n_attempted"]), str(a["n_success"]),
                            f"{number_cell(a['success_rate'], percent=True)} %",
                            f"{number_cell(a['success_with_dropout_rate'], percent=True)} %", db, snr,
                            f"{a['attack_seconds']:.0f}"])
    lines += ["## Attacks", "",
              *markdown_table(["attack", "attempted", "successful", "success rate", "with dropout (p=0.1)",
                               "mean dB_x(δ)", "median SNR [dB]", "seconds"], attack_rows)]
    # a resumed run's call is short: the attacks' own time, summed from their manifests, says what they cost
    attack_total = sum(a["attack_seconds"] for a in results["attacks"].values())
    lines += ["", f"Time: {results['timing']['total_seconds']:.0f} s in this call (features "
              f"{results['timing']['features_seconds']:.0f} s); the attacks took {attack_total:.0f} s in all, "
              "summed over every call that crafted them (a resumed run's call is shorter).", ""]
    # the banner goes on top but needs every AUROC cell counted first
    return "\n".join(title + aurocs.banner(quick=bool(results["settings"]["quick"])) + lines)


__all__ = ["tables_markdown", "write_figures"]
