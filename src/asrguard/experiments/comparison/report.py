"""``tables.md`` of a detector comparison: AUROC, TPR at 1 % FPR, false alarms, cost, adaptive attackers.

Example:
    >>> print(tables_markdown(results))   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Mapping

from ...evaluate.tables import AurocCells, markdown_table, number_cell

ATTACK_LABELS = {"cw": "CW", "dr": "DR", "nrr": "NRR", "ia": "IA", "us": "US"}


def _db(summary: Mapping | None) -> str:
    if not summary or summary.get("mean_db_x_delta") is None:
        return "–"
    return f"{summary['mean_db_x_delta']:.1f} dB / {summary['median_snr_db']:.1f} dB"


def _extra(paired: Mapping | None) -> str:
    """``+5.2 dB (n=11)``; "–" for results written before the paired figure existed, or with none evading."""
    if not paired or paired.get("mean") is None:
        return "–"
    return f"{paired['mean']:+.1f} dB (n={paired['n']})"


def _cell_rows(results: Mapping, kinds: list, speech: list, key: str, cells: AurocCells) -> tuple[list, list]:
    """AUROC rows and TPR-at-1 %-FPR rows of the speech cells' ``key`` part (e.g. ``recognised_benign``)."""
    got = {(k, a): results["cells"][k][a][key] for k in kinds for a in speech}
    return ([[k, *(cells.format(got[k, a]) for a in speech)] for k in kinds],
            [[k, *(number_cell(got[k, a]["tpr_at_1pct_fpr"], percent=True) for a in speech)] for k in kinds])


def _flag_rows(flagged: Mapping, kinds: list) -> list:
    """Per detector, the share flagged among inputs transcribed right and wrong, with n."""
    def share(kind: str, group: str) -> str:
        got = flagged.get(kind, {}).get(group)
        return f"{number_cell(got['rate'], percent=True)} (n={got['n']})" if got and got["n"] else "–"

    return [[kind, share(kind, "recognised"), share(kind, "misrecognised")] for kind in kinds]


def _recognised_tables(results: Mapping, kinds: list, attacks: list, cells: AurocCells) -> list[str]:
    """The speech cells again against only the benign sources the recogniser transcribes correctly, and
    how many benign test sources each detector flags among those it transcribes right and wrong."""
    wrong = results.get("misrecognised_test_benign")
    speech = [a for a in attacks if all("recognised_benign" in results["cells"][k][a] for k in kinds)]
    if not wrong or not speech:
        return []
    labels = [ATTACK_LABELS.get(a, a) for a in speech]
    auroc_rows, tpr_rows = _cell_rows(results, kinds, speech, "recognised_benign", cells)
    return ["## Without the benign sources the recogniser gets wrong", "",
            f"{wrong['n']} of {wrong['of']} benign test sources are transcribed wrongly (normalised text unlike the "
            "reference). A misrecognised benign input is uncertain and unstable too, so it scores like an adversarial "
            "one. The cells below compare each speech attack's examples with the other benign sources only.", "",
            "### AUROC", "", *markdown_table(["detector", *labels], auroc_rows), "",
            "### TPR at 1 % FPR [%]", "", *markdown_table(["detector", *labels], tpr_rows), "",
            "### Benign test sources flagged at the calibrated threshold [%]", "",
            *markdown_table(["detector", "transcribed right", "transcribed wrong"],
                            _flag_rows(results.get("flagged_test_benign", {}), kinds)), ""]


def _pool_tables(results: Mapping, kinds: list, attacks: list, cells: AurocCells) -> list[str]:
    """The speech cells against their sources plus the held-out benign pool: all of it, and the part the
    recogniser transcribes right; and how much of the pool each detector flags."""
    pool = results.get("misrecognised_benign_pool")
    speech = [a for a in attacks if all("benign_pool" in results["cells"][k][a] for k in kinds)]
    if not pool or not speech:
        return []
    labels = [ATTACK_LABELS.get(a, a) for a in speech]
    out = ["## Against a larger benign set", "",
           f"Each speech cell's examples against their own sources plus {results['sizes']['benign_pool']} more "
           "held-out benign utterances of the run's corpora (none a source, none used for calibration): enough to "
           f"place a 1 % false-positive threshold, which about 30 sources are not. The recogniser transcribes "
           f"{pool['n']} of the {pool['of']} wrongly.", ""]
    for key, title in (("benign_pool", "all of them"), ("benign_pool_recognised", "only those transcribed right")):
        auroc, tpr = _cell_rows(results, kinds, speech, key, cells)
        out += [f"### AUROC, {title}", "", *markdown_table(["detector", *labels], auroc), "",
                f"### TPR at 1 % FPR [%], {title}", "", *markdown_table(["detector", *labels], tpr), ""]
    return out + ["### The larger benign set flagged at the calibrated threshold [%]", "",
                  *markdown_table(["detector", "transcribed right", "transcribed wrong"],
                                  _flag_rows(results.get("flagged_benign_pool", {}), kinds)), ""]


def tables_markdown(results: Mapping) -> str:
    """The comparison's Markdown report."""
    attacks = list(results["attacks"])
    kinds = list(results["cells"])
    cells = AurocCells()
    auroc_rows = [[f"{kind} ({results['detectors'][kind]['name']})",
                   *(cells.format(results["cells"][kind].get(a)) for a in attacks)] for kind in kinds]
    tpr_rows = [[kind, *(f"{number_cell(results['cells'][kind][a].get('tpr_at_1pct_fpr'), percent=True)} / "
                         f"{number_cell(results['cells'][kind][a].get('detection_rate'), percent=True)}"
                         for a in attacks)] for kind in kinds]
    held_out = list(next(iter(results["false_alarms"].values()), {}))
    alarm_rows = [[kind, str(results["detectors"][kind]["passes"]),
                   *(f"{number_cell(results['false_alarms'][kind][h]['rate'], percent=True)} "
                     f"(n={results['false_alarms'][kind][h]['n']})" for h in held_out)] for kind in kinds]
    sizes = results["sizes"]
    lines = ["# Detectors compared", "",
             f"Run: `{results['run']}`; recogniser `{results['recognizer']}`. Every detector was fitted on "
             f"{sizes['fit_benign']} benign training sources and {sizes['fit_adversarial']} DR examples of them "
             f"(rules that learn nothing use only the benign ones), and its threshold set at "
             f"{100 * results['target_fpr']:g} % false positives on {sizes['calibration']} other benign utterances. "
             f"Test cells: the successful examples of the run's held-out test sources against their own benign "
             f"sources (US: UrbanSound test clips). Nothing here is adaptive unless the last table says so."
             + (f" Dropout realisations drawn from mask seed {results['mask_seed']}."
                if results.get("mask_seed") is not None else "")
             + (f" Their masks are {results['masks']} (asrguard.asr.ctc.masks)." if results.get("masks") else ""), ""]
    body = ["## AUROC", "", *markdown_table(["detector", *(ATTACK_LABELS.get(a, a) for a in attacks)], auroc_rows), "",
            "## TPR at 1 % FPR / detection rate at the calibrated threshold [%]", "",
            *markdown_table(["detector", *(ATTACK_LABELS.get(a, a) for a in attacks)], tpr_rows), "",
            "## False alarms on held-out benign sets at the calibrated threshold [%], and cost", "",
            "Passes: recogniser transcriptions (or realisations) per input.", "",
            *markdown_table(["detector", "passes", *held_out], alarm_rows), ""]
    body += _recognised_tables(results, kinds, attacks, cells)
    body += _pool_tables(results, kinds, attacks, cells)
    if results.get("adaptive"):
        rows = []
        for kind, per in results["adaptive"].items():
            for folder, a in per.items():
                rows.append([kind, f"`{folder}`", str(a["attempted"]), str(a["reached_target"]), str(a["evaded"]),
                             number_cell(a["evasion_rate"], percent=True),
                             cells.cell(a.get("vs_benign_auroc"), a.get("vs_benign_auroc_ci"),
                                        a.get("vs_benign_n_adversarial"), a.get("vs_benign_n_benign")),
                             cells.cell(a.get("vs_held_out_auroc"), a.get("vs_held_out_auroc_ci"),
                                        a.get("vs_held_out_n_adversarial"), a.get("vs_held_out_n_benign"))
                             if "vs_held_out_auroc" in a else "–",
                             _db(a["distortion_evading"]), _db(a["distortion_cw_same_sources"]),
                             _extra(a.get("extra_db_evading_paired"))])
        body += ["## Adaptive attackers", "",
                 "Each against the detector it was made for, at that detector's calibrated threshold. Evaded: "
                 "reached the target and scored at or below the threshold. AUROC vs benign: against the "
                 "examples' own sources; vs held-out: against every held-out benign test utterance (the sources "
                 "are often easy inputs, so the first flatters a detector whose attacker pushes scores into the "
                 "benign range). Distortion: mean dB_x(δ) / median SNR. Extra: each evading example's "
                 "dB_x(δ) over CW's on the same source, mean (n).",
                 "", *markdown_table(["detector", "attack folder", "attempted", "reached target", "evaded",
                                      "evasion rate", "AUROC vs benign", "AUROC vs held-out",
                                      "distortion (evading)", "CW on the same sources", "extra (evading)"], rows),
                 ""]
        without = [k for k in kinds if k not in results["adaptive"]]
        if without:
            body += [f"No adaptive attacker was run against: {', '.join(without)}.", ""]
    # the banner (which ends with the legend) goes under the title but needs every AUROC cell counted first
    return "\n".join(lines[:2] + cells.banner(quick=False) + lines[2:] + body)


__all__ = ["tables_markdown"]
