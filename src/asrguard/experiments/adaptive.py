"""An attacker who knows the detector's seed, against a detector whose seed is known or secret.

:class:`~asrguard.attacks.adaptive.KnownMaskAttack` crafts examples whose I seeded dropout
realisations (the shipped detector's: seed 0, I = 50, p = 0.1) all transcribe as the target.
This runs it on the held-out test sources of a finished Jayashankar reproduction, toward the
same targets as that run's CW examples, and scores both sets with the detector

* under the seed the attacker knew (the published one), and
* under seeds the attacker did not know (what ``--mask-seed random`` gives a deployment),

at the detector's own threshold. Benign test sources give the false-positive rate under
each seed. The attack run is resumable (``--out``); rerunning only re-scores.

    python -m asrguard.experiments.adaptive --run runs/jayashankar2020 --out runs/adaptive --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..attacks.factory import make_attack
from ..attacks.runner import report, run_attack
from ..audio import load_audio
from ..data import read_jsonl
from ..defaults import load_detector
from ..errors import ConfigError
from ..fileio import atomic_write_text
from .jayashankar2020 import (CLASSIFIERS, SPEECH_ATTACKS, FeatureCache, evaluate_classifiers, feature_set,
                              finished_run, fit_default_detector, paired, successful_examples, train_classifiers)
from .mask_seeds import add_run_arguments, parse_seeds, seed_sweep

#: Seeds the attacker did not know.
SECRET_SEEDS = (101, 202, 303, 404, 505)


class RunTargets:
    """Target sampler that reuses another attack run's target for each item id."""

    def __init__(self, targets: dict[str, str]):
        self.targets = dict(targets)

    def choose(self, item_id: str, available_frames: int, exclude: str = "") -> str | None:
        return self.targets.get(item_id)


def summarise(sweep: dict, known_seed: int) -> dict:
    """Per-attack rates under the known seed, and their mean / min / max over the secret seeds.

    ``sweep`` is :func:`asrguard.experiments.mask_seeds.seed_sweep`'s output.

    Example:
        >>> summarise(seed_sweep(det, benign, {"cw": adv}, seeds=(0, 7)), 0)["at_secret_seeds"]["cw"]  # doctest: +SKIP
    """
    per_seed = sweep["per_seed"]
    secret = [s for s in per_seed if s != known_seed]
    out: dict = {"at_known_seed": per_seed[known_seed], "at_secret_seeds": {}}
    for attack in per_seed[known_seed]:
        out["at_secret_seeds"][attack] = {
            metric: {"mean": float(np.mean([per_seed[s][attack][metric] for s in secret])),
                     "min": float(np.min([per_seed[s][attack][metric] for s in secret])),
                     "max": float(np.max([per_seed[s][attack][metric] for s in secret]))}
            for metric in ("auroc", "true_positive_rate", "false_positive_rate")} if secret else {}
    return out


def classifier_table(run_dir, recognizer, attack_sets: dict[str, tuple[str, Path, list[dict]]], *,
                     also_train_on: tuple[str, Path, list[dict]] | None = None) -> dict:
    """Every classifier of the reproduction, trained on its DR examples, on other attacks' test sources.

    ``attack_sets`` maps a label to ``(cache kind, folder, successful manifest rows)``; the kind
    names the set in the run's feature cache (``<attack>-<config hash>``), so the run's own
    features are reused and the cells are comparable with its ``tables.md`` (p = 0.1, 70/30
    split by source). ``also_train_on`` adds another attack's examples of the *training*
    sources to the DR ones (a detector hardened against that attack). Returns ``{label:
    {classifier: metrics}}`` with AUROC and accuracy at each classifier's own threshold.
    """
    results, settings, speech, train_ids, test_sources = finished_run(run_dir, recognizer)
    rate = recognizer.sample_rate
    extractor = settings.extractor()
    cache = FeatureCache(Path(run_dir) / "features", recognizer, extractor)

    def features(kind: str, folder: Path, rows: list[dict]):
        entries = [(r["id"], r["id"], (lambda r=r: load_audio(folder / r["audio"], rate)[0])) for r in rows]
        return feature_set(cache, kind, entries, lambda: None)

    benign = feature_set(cache, "benign", [(i.id, i.id, (lambda i=i: i.waveform)) for i in speech], lambda: None)
    train_sources = set(train_ids)
    dr = results["attacks"][settings.train_attack]
    dr_folder = Path(dr["folder"])
    adversarial = features(f"{settings.train_attack}-{dr['config_hash']}", dr_folder,
                           successful_examples(dr_folder, train_sources))
    if also_train_on is not None:
        adversarial = adversarial.plus(features(*also_train_on).select(train_sources))
    trained = train_classifiers(CLASSIFIERS, *paired(benign, adversarial, train_sources), settings.seed)
    table = {}
    for label, (kind, folder, rows) in attack_sets.items():
        cell = evaluate_classifiers(trained, *paired(benign, features(kind, folder, rows), test_sources))
        table[label] = {name: {k: v for k, v in m.items() if not k.startswith("_")} for name, m in cell.items()}
    return table


def run(run_dir, out_dir, *, detector_dir=None, model=None, secret_seeds: Sequence[int] = SECRET_SEEDS,
        limit: int | None = None, batch_size: int = 8, progress: bool = True, overrides: dict | None = None,
        harden: bool = False, save_detector=None) -> dict:
    """Attack the run's test sources with known masks, then score at the known and secret seeds.

    ``harden``: also attack the run's training sources and train every classifier on their
    known-mask examples besides the DR ones, then score the same test sources again.
    ``save_detector`` (needs ``harden``): fit and save a deployable all-features detector the
    way the shipped one is fitted (:func:`~asrguard.experiments.jayashankar2020.fit_default_detector`),
    with the known-mask examples of its fitting sources added.

    ``overrides``: :class:`~asrguard.attacks.adaptive.KnownMaskConfig` fields (as strings, like
    ``asrguard attack --set``), e.g. ``{"tau_db": "20"}``. Writes ``adaptive.json`` and
    ``adaptive.md`` into ``out_dir``.
    """
    detector = load_detector(detector_dir, model)
    recognizer = detector.recognizer
    results, _, speech, train_ids, test_sources = finished_run(run_dir, recognizer, model)
    c = detector.feature_extractor.config
    if c.seed in secret_seeds:
        raise ConfigError(f"the secret seeds must differ from the detector's own seed {c.seed}")
    cw_folder = Path(results["attacks"]["cw"]["folder"])
    all_cw_rows = {r["id"]: r for r in read_jsonl(cw_folder / "manifest.jsonl", allow_partial_tail=True)
                   if r.get("target")}
    cw_rows = {i: r for i, r in all_cw_rows.items() if i in test_sources}
    items = [item for item in speech if item.id in cw_rows][:limit]
    if not items:
        raise ConfigError(f"{run_dir}: no CW examples of test sources to take targets from")

    attack = make_attack("known-mask", recognizer, {"mask_seed": c.seed, "n_realizations": c.n, "p": c.p,
                                                    **(overrides or {})})
    config = attack.config
    out_dir = Path(out_dir)
    attack_dir = out_dir / f"known-mask-{attack.config_hash}"
    train_sources = set(train_ids)
    train_items = [item for item in speech if item.id in all_cw_rows and item.id in train_sources] if harden else []
    # test sources first, so a cut-short hardening run still leaves the main result
    for chunk in (items, train_items):
        if chunk:
            run_attack(attack, chunk, attack_dir, sampler=RunTargets({i: r["target"] for i, r in all_cw_rows.items()}),
                       batch_size=batch_size, progress=progress,
                       meta={"run": str(run_dir), "detector": str(detector_dir or "shipped")})
    rate = recognizer.sample_rate
    ids = {item.id for item in items}
    adaptive_rows = successful_examples(attack_dir, ids)
    fractions = [float(r.get("known_mask_target_fraction", 0.0)) for r in adaptive_rows]
    adaptive_audio = [load_audio(attack_dir / r["audio"], rate)[0] for r in adaptive_rows]
    # the examples that reached the attacker's goal on the known realisations
    goal = [w for w, f in zip(adaptive_audio, fractions) if f >= config.required_fraction]
    sets = {
        "benign": [item.waveform for item in items],
        "known_mask": adaptive_audio,
        **({"known_mask_goal": goal} if goal else {}),
        "cw": [load_audio(cw_folder / cw_rows[i]["audio"], rate)[0] for i in sorted(ids)
               if cw_rows[i].get("success") and cw_rows[i].get("audio")],
    }
    if not sets["known_mask"]:
        raise ConfigError(f"{attack_dir}: the attack succeeded on no source; nothing to score")
    sweep = seed_sweep(detector, sets.pop("benign"), sets, seeds=[c.seed, *secret_seeds])
    evaluated = {name: (f"{name}-{results['attacks'][name]['config_hash']}", Path(results["attacks"][name]["folder"]),
                        successful_examples(results["attacks"][name]["folder"], ids))
                 for name in SPEECH_ATTACKS}
    evaluated["known-mask"] = (f"known-mask-{attack.config_hash}", attack_dir, adaptive_rows)
    classifiers = classifier_table(run_dir, recognizer, evaluated)
    hardened = None
    if harden:
        train_rows = successful_examples(attack_dir, train_sources)
        hardened = classifier_table(run_dir, recognizer, evaluated,
                                    also_train_on=(f"known-mask-{attack.config_hash}", attack_dir, train_rows))
    saved = None
    if save_detector is not None:
        if not harden:
            raise ConfigError("saving a hardened detector needs the hardening run (harden=True)")
        saved = fit_default_detector(run_dir, save_detector, candidates=("all-svm",), model=model,
                                     also_train_on=(f"known-mask-{attack.config_hash}", attack_dir))
    summary = {
        "experiment": "known-mask adaptive attack", "run": str(run_dir), "attack_dir": str(attack_dir),
        "detector": str(detector_dir or "shipped"), "classifier": detector.classifier.name,
        "threshold": float(detector.threshold), "known_seed": c.seed, "secret_seeds": list(map(int, secret_seeds)),
        "n_sources": len(items), "n_known_mask": len(sets["known_mask"]), "n_cw": len(sets["cw"]),
        "n_known_mask_goal": len(goal),
        "attack": report(attack_dir), "attack_config": attack.config_dict(),
        "known_realizations_on_target": {"mean": float(np.mean(fractions)), "median": float(np.median(fractions)),
                                         "share_reaching_required": float(np.mean(
                                             [f >= config.required_fraction for f in fractions]))},
        **summarise(sweep, c.seed), "per_seed": {str(s): v for s, v in sweep["per_seed"].items()},
        "classifiers_trained_on_dr": classifiers,
        **({"classifiers_trained_on_dr_and_known_mask": hardened} if hardened else {}),
        **({"hardened_detector": {"folder": str(save_detector), **saved}} if saved else {}),
    }
    atomic_write_text(out_dir / "adaptive.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out_dir / "adaptive.md", markdown(summary))
    return summary


def markdown(summary: dict) -> str:
    """The summary as a table: detection at the threshold, seed known vs secret."""
    known, secret = summary["at_known_seed"], summary["at_secret_seeds"]

    def show(metric: str, value: float) -> str:
        return f"{value:.3f}" if metric == "auroc" else f"{100 * value:.1f} %"

    lines = [f"Detector {summary['classifier']} (threshold {summary['threshold']:+.3f}) on {summary['n_sources']} "
             f"held-out test sources; the attacker knows seed {summary['known_seed']}. Secret seeds "
             f"{', '.join(map(str, summary['secret_seeds']))}: mean (min-max).", "",
             "| | seed known to the attacker | secret seed |", "|---|---|---|"]
    rows = [("known_mask", "true_positive_rate", f"known-mask examples detected (n = {summary['n_known_mask']})"),
            ("known_mask_goal", "true_positive_rate",
             f"... of them, those that reached the goal (n = {summary.get('n_known_mask_goal', 0)})"),
            ("cw", "true_positive_rate", f"CW examples detected (n = {summary['n_cw']})"),
            ("known_mask", "auroc", "AUROC, known-mask vs benign"),
            ("cw", "auroc", "AUROC, CW vs benign"),
            ("cw", "false_positive_rate", "benign flagged")]
    for attack, metric, label in rows:
        if attack not in known:
            continue
        cell = secret.get(attack, {}).get(metric)
        right = (f"{show(metric, cell['mean'])} ({show(metric, cell['min'])}-{show(metric, cell['max'])})"
                 if cell else "-")
        lines.append(f"| {label} | {show(metric, known[attack][metric])} | {right} |")
    a, on_target = summary["attack"], summary["known_realizations_on_target"]
    lines += ["", f"Attack, over every source it attacked: {a['n_success']}/{a['n']} reach the target without "
              f"dropout, mean dB_x(δ) {a['mean_db_x_delta']:.1f}, {a['seconds_per_success']:.1f} s per success. "
              f"On the test sources, of the detector's "
              f"{summary['attack_config']['n_realizations']} realisations (known seed), {100 * on_target['mean']:.0f} % "
              f"(median {100 * on_target['median']:.0f} %) transcribe as the target; "
              f"{100 * on_target['share_reaching_required']:.0f} % of the examples reach the attack's "
              f"goal of {100 * summary['attack_config']['required_fraction']:.0f} %."]
    for key, trained_on in (("classifiers_trained_on_dr", "DR examples"),
                            ("classifiers_trained_on_dr_and_known_mask", "DR and known-mask examples")):
        classifiers = summary.get(key)
        if not classifiers:
            continue
        labels = list(classifiers)
        lines += ["", f"Every classifier of the reproduction, trained on {trained_on} of the training sources "
                      "(p = 0.1, seed known), AUROC / accuracy on the test sources:", "",
                  "| classifier | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
        for name in classifiers[labels[0]]:
            cells = [classifiers[label].get(name, {}) for label in labels]
            lines.append(f"| {name} | " + " | ".join(
                f"{m['auroc']:.3f} / {100 * m['accuracy']:.1f} %" if "auroc" in m else "-" for m in cells) + " |")
    hardened = summary.get("hardened_detector")
    if hardened:
        test = hardened["test_at_calibrated_threshold"]
        lines += ["", f"Hardened detector saved to `{hardened['folder']}` ({hardened['classifier']}, trained on "
                      f"{hardened['trained_on']}), on the test sources at its calibrated threshold:", "",
                  "| attack | AUROC | detected | benign flagged |", "|---|---|---|---|"]
        lines += [f"| {attack} | {m['auroc']:.3f} | {100 * m['true_positive_rate']:.1f} % | "
                  f"{100 * m['false_positive_rate']:.1f} % |" for attack, m in test.items()]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/adaptive"), help="output folder (resumable)")
    parser.add_argument("--secret-seeds", default=",".join(map(str, SECRET_SEEDS)),
                        help="comma-separated seeds the attacker does not know")
    parser.add_argument("--limit", type=int, default=None, help="attack only the first N test sources")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a KnownMaskConfig field (repeatable), e.g. --set masks_per_step=25")
    parser.add_argument("--harden", action="store_true",
                        help="also attack the training sources and retrain the classifiers on those examples")
    parser.add_argument("--save-detector", type=Path, default=None, metavar="DIR",
                        help="with --harden: fit and save an all-features detector trained on DR and known-mask "
                             "examples, calibrated like the shipped one")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    seeds = parse_seeds(parser, args.secret_seeds, "--secret-seeds")
    if args.save_detector is not None and not args.harden:
        parser.error("--save-detector needs --harden")
    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    summary = run(args.run, args.out, detector_dir=args.detector, model=args.model, secret_seeds=seeds,
                  limit=args.limit, batch_size=args.batch_size, progress=not args.json, overrides=overrides,
                  harden=args.harden, save_detector=args.save_detector)
    if args.json:
        print(json.dumps(summary))
    else:
        print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
