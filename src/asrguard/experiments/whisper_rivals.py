"""The rival detectors on Whisper tiny.en: a first Whisper column of the detector comparison (a pilot).

``asrguard compare-detectors`` works from a finished CTC reproduction; Whisper has none yet (its
NRR, IA and US attacks need a GPU's time). This measures what can be measured now, on the
Whisper-defence run's sources, speakers and benign sets (:mod:`.whisper_defence`):

1. **attack**: CW against Whisper on the first ``--n`` attack sources of *held-out* speakers, with
   the defence run's settings (its folder name too: ``cw-<hash>`` is the same attack);
2. **sets**: the test cell is those sources against their CW examples; thresholds are set at 5 %
   false positives on the calibration speakers' benign speech; false alarms are counted on the
   held-out speakers' benign speech, per ``english_speech`` subset and word corpus;
3. **features**, cached per detector and input (``OUT/features``; the dropout features in
   ``OUT/uncertainty.jsonl``, which ``--defence-features`` seeds with the defence run's benign rows);
4. **cells**: per detector, AUROC with its interval, TPR at 1 % FPR, the detection rate at its
   threshold, false alarms per held-out set, and recogniser passes per input.

The detectors: the shipped Whisper detector (dropout uncertainty, ``all-svm``, its own
worst-subset threshold) and the rivals that fit on benign speech alone (``transform``, with
``--likelihood`` also measuring likelihood gains, ``temporal``, ``noise-flood``). The
``distribution`` and ``combined`` detectors learn from adversarial examples: ``--fit-on-dr``
crafts DR on the fitting speakers' sources (the defence run's DR) and fits them on it against
those speakers' benign speech.

    python -m asrguard.experiments.whisper_rivals --out runs/whisper_rivals --n 24 --fit-on-dr --n-fit 24 \\
        --defence-features docs/results/whisper/defence/features.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..asr import recipes
from ..asr.recipes import default_data_root
from ..asr.registry import load_recognizer
from ..attacks.factory import make_attack
from ..attacks.runner import read_records, report, run_attack
from ..attacks.sources import load_items
from ..attacks.targets import TargetSampler
from ..audio import load_audio
from ..data import read_jsonl
from ..defaults import load_detector
from ..errors import ConfigError, DataError
from ..detect.registry import make_detector
from ..evaluate.tables import AurocCells, markdown_table, number_cell
from ..fileio import atomic_write_text
from ..uncertainty.batch import extract_features
from ..uncertainty.features import FeatureTable
from .common import ProgressBars, without_nan, write_json
from .comparison import SUMMARY_KEYS, TARGET_FPR, cell_metrics, distortion, flagged_shares
from .comparison.inputs import Entry, RowCache, misrecognised
from .whisper_defence import benign_stage, speaker_role, subset_of, worst_subset_threshold

#: (row name, detector kind, settings): the rivals that fit on benign speech alone; with ``--likelihood`` also the
#: transform detector measuring session 20's likelihood gains (the loss of the input's own transcript on each copy)
RIVALS = (("transform", "transform", {}), ("temporal", "temporal", {}), ("noise-flood", "noise-flood", {}))
LIKELIHOOD = ("transform-likelihood", "transform", {"measure": "likelihood", "reduce": "mean"})
RECOGNIZER = "whisper:tiny.en"
#: the Whisper-defence run's CW settings (stage 1 of :mod:`.whisper_defence`)
CW_SETTINGS = {"seed": "0", "max_iter": "150", "max_shrinks": "2", "tau_db": "25"}


def attack_sources(recognizer, seed: int = 0) -> tuple[list, dict, dict]:
    """The defence run's 100 attack sources, every ``english_speech`` record by id, and each source's speaker role."""
    root = default_data_root()
    sources = load_items(["english-speech"], 100, seed, root, recognizer.sample_rate, max_seconds=8.0, min_seconds=2.0)
    records = {r.id: r for r in recipes.english_speech_records(root)}
    roles = {it.id: speaker_role(records[it.id.split(":", 1)[1]].speaker, seed) for it in sources}
    return sources, records, roles


def attack(recognizer, name: str, items, out: Path, seed: int, progress: bool) -> list[Entry]:
    """CW or DR (dropout at the detector's sites) with the defence run's settings; its successful examples."""
    extra = {"p_dr": str(recognizer.default_p)} if name == "dr" else {}
    made = make_attack(name, recognizer, {**CW_SETTINGS, **extra})
    folder = out / "attacks" / f"{name}-{made.config_hash}"
    run_attack(made, items, folder, sampler=TargetSampler("commands", seed=seed), batch_size=1, progress=progress,
               meta={"recognizer": RECOGNIZER, "n": len(items), "seed": seed})
    rate, asked = recognizer.sample_rate, {it.id for it in items}  # the folder may hold more from a larger --n
    return [Entry(name, f"{name}:{r['id']}", f"benign:{r['id']}", (lambda r=r: load_audio(folder / r["audio"], rate)[0]),
                  {**r, "folder": folder.name}) for r in read_records(folder) if r.get("success") and r["id"] in asked]


def benign_sets(sources, records: dict, per_subset: int, seed: int
                ) -> tuple[list[Entry], list[Entry], dict[str, list[Entry]]]:
    """Fitting entries (fitting speakers), calibration entries (calibration speakers) and held-out entries by
    subset (held-out speakers)."""
    rows = [(f"benign:{it.id}", it.waveform, records[it.id.split(":", 1)[1]].speaker,
             subset_of(records[it.id.split(":", 1)[1]].source), None, it.transcript) for it in sources]
    rows += benign_stage(sources, SimpleNamespace(per_subset=per_subset, seed=seed))
    fit, calibration, held_out = [], [], {}
    for key, waveform, speaker, subset, role, transcript in rows:
        role = role or speaker_role(speaker, seed)
        entry = Entry("benign", key, key, (lambda w=waveform: w), {"transcript": transcript, "subset": subset})
        if role == "test":
            held_out.setdefault(subset, []).append(entry)
        else:
            (calibration if role == "calibrate" else fit).append(entry)
    return fit, calibration, dict(sorted(held_out.items()))


def seed_uncertainty(path: Path, defence_features: Path | None) -> None:
    """Start ``path`` with the defence run's benign rows (its adversarial audio is not this run's)."""
    if path.exists() or defence_features is None:
        return
    rows = [r for r in read_jsonl(defence_features) if r["key"].startswith("benign:")]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def measure(scores, cw_sources: list[Entry], cw: list[Entry], held_out: dict, threshold: float,
            wrong: set = frozenset()) -> dict:
    """The CW cell and the false alarms of one detector, from ``scores(entries)``: per held-out set, and
    among the held-out benign inputs the recogniser transcribes right and (ids in ``wrong``) wrongly.

    ``cw_vs_held_out``: the CW examples against their sources and every held-out benign input, where a
    1 % false-positive rate can be placed (36 sources alone cannot)."""
    every = [e for entries in held_out.values() for e in entries]
    benign = list({e.id: e for e in cw_sources + every}.values())  # the held-out sets hold the sources too

    def rate(entries):
        return {"rate": float(np.mean(scores(entries) > threshold)) if entries else None, "n": len(entries)}

    pooled = cell_metrics(scores(benign), scores(cw), threshold)
    return {"cw": cell_metrics(scores(cw_sources), scores(cw), threshold),
            "cw_vs_held_out": {k: pooled[k] for k in SUMMARY_KEYS},
            "false_alarms": {name: rate(entries) for name, entries in held_out.items()},
            "flagged_held_out": flagged_shares(every, wrong, scores, threshold)}


def misrecognised_ids(recognizer, entries: list[Entry], path: Path) -> set:
    """Ids of ``entries`` the recogniser transcribes wrongly, cached in ``path`` (only new ids are transcribed)."""
    known = json.loads(path.read_text()) if path.exists() else {"checked": [], "wrong": []}
    checked = set(known["checked"])
    todo = [e for e in entries if e.id not in checked]
    if todo:
        known = {"checked": sorted(checked | {e.id for e in todo}),
                 "wrong": sorted(set(known["wrong"]) | set(misrecognised(recognizer, todo)))}
        write_json(path, known)
    return set(known["wrong"]) & {e.id for e in entries}


def capped(held_out: dict[str, list[Entry]], keep: set, cap: int | None, seed: int) -> dict[str, list[Entry]]:
    """At most ``cap`` entries per set (``None``: all): the ids in ``keep`` first, then a seeded draw of the rest.

    Example:
        >>> sets = {"a": [Entry("benign", str(i), str(i), lambda: None) for i in range(5)]}
        >>> [e.id for e in capped(sets, {"4"}, 2, seed=0)["a"]][0]
        '4'
    """
    if cap is None:
        return held_out
    out = {}
    for k, (name, entries) in enumerate(held_out.items()):
        first = [e for e in entries if e.id in keep]
        rest = [e for e in entries if e.id not in keep]
        order = np.random.default_rng([seed, 11, k]).permutation(len(rest))
        out[name] = (first + [rest[i] for i in order])[:max(cap, len(first))]
    return out


class Rows:
    """Feature rows of entries for a rival or the combined detector, measured once and cached per input (the
    combined detector's joined from its members' caches and the dropout features)."""

    def __init__(self, detector, root: Path, uncertainty: dict):
        members = getattr(detector, "members", None)
        self.detector, self.uncertainty = detector, uncertainty
        self.caches = {name: RowCache(root, m) for name, m in members.items()} if members else {"": RowCache(root, detector)}
        self.memo: dict = {}

    def measure(self, entries: list[Entry], progress: bool, label: str) -> None:
        todo = list({e.id: e for e in entries if e.id not in self.memo}.values())
        with ProgressBars(progress, stderr=True) as bars:
            tick = bars.task(f"{label}: features", len(todo))
            for e in todo:
                parts = {name: cache.get(e) for name, cache in self.caches.items()}
                self.memo[e.id] = (parts[""] if "" in parts else
                                   self.detector.join(FeatureTable.stack([self.uncertainty[e.id]]), parts)[0])
                tick()

    def __call__(self, entries: list[Entry]) -> np.ndarray:
        return np.vstack([self.memo[e.id] for e in entries])


@dataclass
class Sets:
    """The entries one pilot scores: fitting (benign, DR), calibration, the CW cell, the held-out sets, and the
    ids of held-out inputs the recogniser transcribes wrongly."""

    fit_benign: list[Entry]
    dr: list[Entry]
    calibration: list[Entry]
    cw_sources: list[Entry]
    cw: list[Entry]
    held_out: dict[str, list[Entry]]
    wrong: set


def fit_and_measure_rival(rival, rows: Rows, sets: Sets, *, progress: bool = False, label: str = "") -> dict:
    """Measure the rows a rival needs, fit it (on benign and DR when it learns and DR is given; its threshold
    at its target FPR on the calibration set) and score the CW cell and the held-out sets."""
    learns = bool(sets.dr) and (getattr(rival, "needs_adversarial", False) or rival.kind == "distribution")
    rows.measure(sets.calibration + sets.cw_sources + sets.cw + [e for g in sets.held_out.values() for e in g]
                 + (sets.fit_benign + sets.dr if learns else []), progress, label or rival.kind)
    if learns:
        rival.fit_features(rows(sets.fit_benign), rows(sets.dr), rows(sets.calibration))
    else:
        rival.fit_features(rows(sets.calibration))
    def scores(entries):
        return rival.score_features(rows(entries))

    # the shipped Whisper detector's rule too: the largest per-subset threshold on the calibration speakers
    worst = worst_subset_threshold(scores(sets.calibration), [e.record.get("subset") for e in sets.calibration],
                                   rival.target_fpr)
    return {"name": rival.rule, "threshold": float(rival.threshold), "passes": rival.passes,
            "threshold_rule": f"{100 * rival.target_fpr:g} % FPR on the calibration speakers",
            "fitted_on": "benign and DR of the fitting speakers" if learns else "nothing", "settings": rival.settings(),
            **measure(scores, sets.cw_sources, sets.cw, sets.held_out, rival.threshold, sets.wrong),
            "worst_subset_threshold": float(worst),
            "at_worst_subset_threshold": measure(scores, sets.cw_sources, sets.cw, sets.held_out, worst, sets.wrong)}


def run(out: Path, *, n: int = 24, per_subset: int = 40, seed: int = 0, defence_features: Path | None = None,
        max_per_set: int | None = None, likelihood: bool = False, fit_on_dr: bool = False, n_fit: int | None = None,
        progress: bool = True) -> dict:
    """Run (or resume) the pilot in ``out``; returns the results also written to ``results.json`` and ``tables.md``.

    Example:
        >>> run(Path("runs/whisper_rivals"), n=24, fit_on_dr=True, n_fit=24)["detectors"]["combined"]["cw"]["auroc"]  # doctest: +SKIP
        0.998
    """
    for name, value in (("n", n), ("per_subset", per_subset), ("max_per_set", max_per_set), ("n_fit", n_fit)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    recognizer = load_recognizer(RECOGNIZER)
    sources, records, roles = attack_sources(recognizer, seed)

    # 1. CW on held-out speakers' sources; DR on the fitting speakers' (for the detectors that learn)
    cw = attack(recognizer, "cw", [it for it in sources if roles[it.id] == "test"][:n], out, seed, progress)
    fit_sources = [it for it in sources if roles[it.id] == "fit"][:n_fit]
    dr = attack(recognizer, "dr", fit_sources, out, seed, progress) if fit_on_dr else []
    if not cw or (fit_on_dr and not dr):
        raise DataError(f"{out / 'attacks'}: no {'CW' if not cw else 'DR'} example reached its target; nothing to "
                        "score or fit on")
    by_key = {f"benign:{it.id}": it for it in sources}
    cw_sources = [Entry("benign", e.source, e.source, (lambda it=by_key[e.source]: it.waveform)) for e in cw]

    # 2. sets
    fit_benign, calibration, held_out = benign_sets(sources, records, per_subset, seed)
    held_out = capped(held_out, {e.id for e in cw_sources}, max_per_set, seed)
    every_held_out = [e for group in held_out.values() for e in group]
    folders = {e.kind: e.record["folder"] for e in cw + dr}
    results: dict = {"settings": {"n": n, "per_subset": per_subset, "max_per_set": max_per_set, "seed": seed,
                                  "recognizer": RECOGNIZER, "cw_folder": folders.get("cw"), "fit_on_dr": fit_on_dr,
                                  "n_fit": n_fit,
                                  **({"dr_folder": folders["dr"]} if dr else {}), "target_fpr": TARGET_FPR},
                     "attack": report(out / "attacks" / folders["cw"]),
                     "sizes": {"cw": len(cw), "calibration": len(calibration),
                               "held_out": {k: len(v) for k, v in held_out.items()},
                               **({"fit_benign": len(fit_benign), "fit_dr": len(dr)} if dr else {})},
                     "detectors": {}}
    if dr:  # over the sources asked for (the folder may hold more)
        results["dr_attack"] = {"n": len(fit_sources), "n_success": len(dr), **distortion([e.record for e in dr])}
    wrong = misrecognised_ids(recognizer, every_held_out, out / "misrecognised.json")
    results["misrecognised_held_out"] = {
        "n": len(wrong), "of": len(every_held_out),
        "by_set": {name: sum(e.id in wrong for e in entries) for name, entries in held_out.items()}}
    measured = cw_sources + cw + every_held_out
    fitting = fit_benign + dr

    # 3. the shipped Whisper detector's dropout features (the combined detector reads them too), its own threshold
    detector = load_detector(recognizer=recognizer)
    features_path = out / "uncertainty.jsonl"
    seed_uncertainty(features_path, defence_features)
    with ProgressBars(progress, stderr=True) as bars:
        # calibration too: the combined detector joins them (the defence run's rows hold the benign ones)
        needed = list({e.id: e for e in measured + fitting + (calibration if dr else [])}.values())
        task = bars.task("uncertainty: features", len(needed))
        features = extract_features(recognizer, detector.feature_extractor, [(e.id, e.load()) for e in needed],
                                    features_path, on_row=lambda row: task())

    def uncertainty_scores(entries):
        return detector.score_features(FeatureTable.stack([features[e.id] for e in entries]))

    results["detectors"]["uncertainty"] = {"name": detector.classifier.name, "threshold": float(detector.threshold),
                                           "passes": int(detector.feature_extractor.config.n),
                                           "threshold_rule": "the shipped detector's own (worst subset)",
                                           **measure(uncertainty_scores, cw_sources, cw, held_out, detector.threshold,
                                                     wrong)}

    # 4. the rivals: thresholds at 5 % FPR on the calibration speakers; the learning ones fitted on DR
    config = detector.feature_extractor.config
    chosen = list(RIVALS) + ([LIKELIHOOD] if likelihood else [])
    if dr:
        chosen += [("distribution", "distribution", {}),
                   ("combined", "combined", {"n": config.n, "p": config.p, "seed": config.seed, "masks": config.masks})]
    sets = Sets(fit_benign, dr, calibration, cw_sources, cw, held_out, wrong)
    for name, kind, settings in chosen:
        rival = make_detector(kind, recognizer, **{"seed": seed, **settings}, target_fpr=TARGET_FPR)
        results["detectors"][name] = fit_and_measure_rival(rival, Rows(rival, out / "features", features), sets,
                                                           progress=progress, label=name)
    results["seconds"] = time.perf_counter() - t0
    results = without_nan(results)
    write_json(out / "results.json", results)
    atomic_write_text(out / "tables.md", tables_markdown(results))
    return results


def tables_markdown(results: dict) -> str:
    s, sizes = results["settings"], results["sizes"]
    cells = AurocCells()
    kinds = list(results["detectors"])
    held = list(sizes["held_out"])
    rows = []
    for kind in kinds:
        d = results["detectors"][kind]
        pooled = d.get("cw_vs_held_out")  # absent from results written before it existed
        rows.append([f"{kind} ({d['name']})", cells.format(d["cw"]), number_cell(d["cw"]["tpr_at_1pct_fpr"], percent=True),
                     cells.format(pooled) if pooled else "–",
                     number_cell(pooled["tpr_at_1pct_fpr"], percent=True) if pooled else "–",
                     number_cell(d["cw"]["detection_rate"], percent=True), str(d["passes"]),
                     *(number_cell(d["false_alarms"][h]["rate"], percent=True) for h in held)])
    a = results["attack"]
    cap = (f" --max-per-set {s['max_per_set']}" if s.get("max_per_set") else "") + (
        (" --fit-on-dr" + (f" --n-fit {s['n_fit']}" if s.get("n_fit") else "")) if s.get("fit_on_dr") else "")
    body = [f"`python -m asrguard.experiments.whisper_rivals --n {s['n']} --per-subset {s['per_subset']}{cap}`: CW against "
            f"Whisper tiny.en on {s['n']} sources of held-out speakers (`{s['cw_folder']}`, the Whisper-defence run's "
            f"settings); {sizes['cw']} reached their target. Thresholds: the rivals' at {100 * s['target_fpr']:g} % "
            f"false positives on {sizes['calibration']} benign utterances of the calibration speakers; the shipped "
            "Whisper detector keeps its own. False alarms on the held-out speakers' benign speech "
            f"({', '.join(f'{h} n={n}' for h, n in sizes['held_out'].items())}).", "",
            f"CW: {a['n_success']} of {a['n']} reached the target; mean dB_x(δ) {a['mean_db_x_delta']:.1f} dB, "
            f"median SNR {a['median_snr_db']:.1f} dB, {a['seconds_per_success']:.0f} s per success on this machine.",
            "", "AUROC and TPR at 1 % FPR against the examples' own sources, and against those plus every held-out benign "
            "utterance (a 1 % FPR needs more than the sources).", "",
            *markdown_table(["detector", "AUROC CW", "TPR at 1 % FPR [%]", "AUROC CW vs held-out",
                             "TPR at 1 % FPR vs held-out [%]", "detected at threshold [%]", "passes",
                                 *(f"false alarms {h} [%]" for h in held)], rows), ""]
    worst = [kind for kind in kinds if "at_worst_subset_threshold" in results["detectors"][kind]]
    if worst:
        rows = []
        for kind in worst:
            d = results["detectors"][kind]
            at = d["at_worst_subset_threshold"]
            rows.append([kind, f"{d['worst_subset_threshold']:.3f}", number_cell(at["cw"]["detection_rate"], percent=True),
                         *(number_cell(at["false_alarms"][h]["rate"], percent=True) for h in held)])
        body += ["## At the worst-subset threshold", "",
                 "The shipped Whisper detector's rule for each rival: the largest of the per-subset thresholds at "
                 f"{100 * s['target_fpr']:g} % FPR on the calibration speakers, so that no subset is over-flagged.", "",
                 *markdown_table(["detector", "threshold", "detected at threshold [%]",
                                  *(f"false alarms {h} [%]" for h in held)], rows), ""]
    if results.get("dr_attack"):
        d = results["dr_attack"]
        body[2:2] = [f"DR (`{s['dr_folder']}`) on the fitting speakers' sources, to fit the detectors that learn "
                     f"(distribution, combined) against {sizes['fit_benign']} benign utterances of those speakers: "
                     f"{d['n_success']} of {d['n']} reached the target; mean dB_x(δ) {d['mean_db_x_delta']:.1f} dB.", ""]
    wrong = results.get("misrecognised_held_out")
    if wrong:
        def share(d, group):
            got = d.get("flagged_held_out", {}).get(group)
            return f"{number_cell(got['rate'], percent=True)} (n={got['n']})" if got and got["n"] else "–"

        body += ["## Held-out benign speech transcribed right and wrong", "",
                 f"Whisper transcribes {wrong['n']} of {wrong['of']} held-out benign utterances wrongly (its normalised "
                 f"text unlike the reference; by set: {', '.join(f'{k} {v}' for k, v in wrong['by_set'].items())}). "
                 "The share of each group flagged at each detector's threshold [%]:", "",
                 *markdown_table(["detector", "transcribed right", "transcribed wrong"],
                                 [[kind, share(results["detectors"][kind], "recognised"),
                                   share(results["detectors"][kind], "misrecognised")] for kind in kinds]), ""]
    return "\n".join(["# Rival detectors on Whisper tiny.en (pilot)", "", *cells.banner(quick=False), *body])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=24, help="attack sources of held-out speakers (at most 36)")
    parser.add_argument("--per-subset", type=int, default=40, help="benign utterances per subset (as the defence run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-per-set", type=int, default=None,
                        help="at most this many held-out benign utterances per set (the attacked sources always)")
    parser.add_argument("--likelihood", action="store_true", help="also the transform detector measuring likelihood")
    parser.add_argument("--fit-on-dr", action="store_true",
                        help="craft DR on the fitting speakers' sources and add the detectors that learn from it "
                             "(distribution, combined)")
    parser.add_argument("--n-fit", type=int, default=None, help="with --fit-on-dr: DR on the first this many of the "
                                                                   "fitting speakers' sources (default: all 44)")
    parser.add_argument("--defence-features", type=Path, default=None,
                        help="the Whisper-defence run's features.jsonl: its benign rows are not measured again")
    args = parser.parse_args(argv)
    results = run(args.out, n=args.n, per_subset=args.per_subset, seed=args.seed,
                  defence_features=args.defence_features, max_per_set=args.max_per_set, likelihood=args.likelihood,
                  fit_on_dr=args.fit_on_dr, n_fit=args.n_fit)
    print((args.out / "tables.md").read_text())
    return 0 if results else 1


if __name__ == "__main__":
    raise SystemExit(main())
