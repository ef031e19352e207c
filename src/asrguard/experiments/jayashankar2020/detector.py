"""The shipped detector from a finished Jayashankar et al. (2020) run: :func:`fit_default_detector`.

Example:
    >>> summary = fit_default_detector("runs/jayashankar2020", "detector")  # doctest: +SKIP
    >>> summary["test_at_calibrated_threshold"]["cw"]["auroc"]  # doctest: +SKIP
    0.97
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ...asr.registry import load_recognizer
from ...attacks.sources import load_items
from ...detect.classifiers import make_classifier
from ...detect.detector import Detector
from ...errors import ConfigError
from ...evaluate.detection import detection_metrics, split_by_source
from ...uncertainty.features import FeatureTable, UncertaintyFeatures
from ..common import ProgressBars, without_nan
from .attacks import successful_examples
from .classifiers import evaluate_classifiers, labelled, paired, train_classifiers
from .config import SPEECH_ATTACKS, Settings
from .features import FeatureCache, FeatureSet, feature_set


def calibration_items(settings: Settings, root: Path, sample_rate: int, exclude: set, n: int) -> list:
    """``n`` benign held-out utterances, none of them in ``exclude``, evenly over the corpora.

    Example:
        >>> items = calibration_items(Settings(), Path("../shared/data"), 16000, set(), 10)  # doctest: +SKIP
        >>> len(items)  # doctest: +SKIP
        10
    """
    if n <= 0:
        return []
    per_corpus = -(-n // len(settings.corpora))
    chosen = []
    for corpus in settings.corpora:
        pool = load_items([corpus], per_corpus + settings.n_sources, settings.seed + 1000, root, sample_rate)
        chosen += [item for item in pool if item.id not in exclude][:per_corpus]
    return chosen[:n]


def finished_run(run_dir, recognizer, model=None) -> tuple[dict, Settings, list, list[str], set[str]]:
    """A finished :func:`run`'s results, settings, speech sources, training ids and test sources.

    Raises :class:`ConfigError` when ``recognizer`` is not the model the run attacked.

    Example:
        >>> results, settings, speech, train_ids, test_sources = finished_run("runs/j", recognizer)  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    if not (run_dir / "results.json").is_file():
        raise ConfigError(f"{run_dir}: no results.json; run `asrguard reproduce jayashankar2020 --out {run_dir}` first")
    results = json.loads((run_dir / "results.json").read_text())
    settings = Settings(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in results["settings"].items()})
    if recognizer.checksum != results["model_checksum"]:
        raise ConfigError(f"the run in {run_dir} attacked another model than {model or 'the shipped one'}; "
                          "pass the model it was made with")
    speech = load_items(list(settings.corpora), settings.n_sources, settings.seed, Path(results["data_root"]),
                        recognizer.sample_rate, min_seconds=settings.min_seconds)
    ids = [i.id for i in speech]
    train_mask, test_mask = split_by_source(ids, settings.test_fraction, settings.seed)
    train_ids = [s for s, m in zip(ids, train_mask) if m]
    test_sources = {s for s, m in zip(ids, test_mask) if m}
    return results, settings, speech, train_ids, test_sources


def fit_validation_split(train_ids: Sequence[str], validation_fraction: float, settings: Settings
                         ) -> tuple[set, set]:
    """The run's training sources split again by source: ``(fit sources, validation sources)``.

    Example:
        >>> fit, val = fit_validation_split([f"s{i}" for i in range(10)], 0.3, Settings())
        >>> len(fit), len(val), fit & val
        (7, 3, set())
    """
    fit_mask, val_mask = split_by_source(train_ids, validation_fraction, settings.seed + 1)
    return ({s for s, m in zip(train_ids, fit_mask) if m}, {s for s, m in zip(train_ids, val_mask) if m})


def fit_default_detector(run_dir, detector_dir, *,
                         candidates: Sequence[str] = ("char-svm4", "combined", "all-svm"),
                         target_fpr: float = 0.05, validation_fraction: float = 0.3,
                         extra_calibration: int = 300, progress: bool = False, model=None,
                         also_train_on: tuple[str, Path] | None = None) -> dict:
    """Fit the shipped detector from the cached features of a finished full :func:`run`.

    ``model``: the CTC model folder the run attacked (default: the shipped model).
    ``also_train_on``: ``(cache kind, attack folder)`` of another attack whose examples of the
    fitting sources join the DR ones (their features must be in the run's cache already, as
    :mod:`asrguard.experiments.adaptive` leaves them); it is scored on the test sources too.

    Model selection: the run's *training* sources are split again (70/30 by source); each
    candidate is fitted on DR examples of the first part and scored on the validation part
    against CW, DR, NRR and IA; the best mean AUROC wins (ties: the first candidate). The
    winner, fitted on the first part, gets its threshold (``target_fpr``) from the benign
    validation sources plus ``extra_calibration`` more benign held-out utterances that are not
    sources of the run (drawn with another seed, split evenly over the corpora: a 5 % quantile
    of 21 scores is too noisy), and is evaluated on the run's test sources, which none of these
    steps saw.

    Example:
        >>> fit_default_detector("runs/jayashankar2020", "detector")["classifier"]  # doctest: +SKIP
        'all-svm'
    """
    run_dir = Path(run_dir)
    recognizer = load_recognizer(model)
    results, settings, speech, train_ids, test_sources = finished_run(run_dir, recognizer, model)
    ids = [i.id for i in speech]
    fit_sources, val_sources = fit_validation_split(train_ids, validation_fraction, settings)

    extractor = settings.extractor()
    cache = FeatureCache(run_dir / "features", recognizer, extractor)

    def cached(kind: str, item_ids) -> FeatureSet:
        records, kept = [], []
        for item_id in item_ids:
            path = cache.path(kind, item_id)
            if path.is_file():
                records.append(UncertaintyFeatures.from_dict(json.loads(path.read_text())["features"]))
                kept.append(item_id)
        return FeatureSet(kept, kept, FeatureTable.stack(records) if records else None, records)

    benign = cached("benign", ids)
    source_ids = set(ids)
    attack_sets = {}
    for name in SPEECH_ATTACKS:
        a = results["attacks"][name]
        attack_sets[name] = cached(f"{name}-{a['config_hash']}",
                                   [r["id"] for r in successful_examples(a["folder"], source_ids)])
    scored = list(SPEECH_ATTACKS)
    extra_set = None
    if also_train_on is not None:
        kind, folder = also_train_on
        extra_set = attack_sets[kind] = cached(kind, [r["id"] for r in successful_examples(folder, source_ids)])
        if not len(extra_set):
            raise ConfigError(f"{folder}: no cached features of successful examples; run the attack's experiment first")
        scored.append(kind)

    def training_pair(sources: set) -> tuple[FeatureSet, FeatureSet]:
        adversarial = attack_sets[settings.train_attack].select(sources)
        if extra_set is not None:
            adversarial = adversarial.plus(extra_set.select(sources))
        return benign.select(set(adversarial.sources)), adversarial

    selection = {}
    for name in candidates:
        b, adv = training_pair(fit_sources)
        clf = train_classifiers([name], b, adv, settings.seed)[name]
        per = {}
        for attack in scored:
            vb, va = paired(benign, attack_sets[attack], val_sources)
            per[attack] = {k: v for k, v in evaluate_classifiers({name: clf}, vb, va)[name].items() if not k.startswith("_")}
        selection[name] = {"per_attack": per, "mean_auroc": float(np.mean([per[a]["auroc"] for a in per])),
                           "mean_accuracy": float(np.mean([per[a]["accuracy"] for a in per]))}
    best = max(candidates, key=lambda n: (round(selection[n]["mean_auroc"], 4),
                                          round(selection[n]["mean_accuracy"], 4), -candidates.index(n)))
    b, adv = training_pair(fit_sources)
    detector = Detector(recognizer, extractor, make_classifier(best, seed=settings.seed), target_fpr=target_fpr)
    validation_benign = benign.select(val_sources)
    calibration = [validation_benign.table]
    extra = calibration_items(settings, Path(results["data_root"]), recognizer.sample_rate, source_ids,
                              extra_calibration)
    if extra:
        with ProgressBars(progress, stderr=True) as bars:
            tick = bars.task("calibration features", len(extra))
            calibration.append(feature_set(cache, "benign-calibration", [(i.id, i.id, (lambda i=i: i.waveform))
                                                                        for i in extra], tick).table)
    detector.fit_features(b.table, adv.table, calibration=FeatureTable.concat(calibration))
    test = {}
    for attack in scored:
        tb, ta = paired(benign, attack_sets[attack], test_sources)
        table, labels = labelled(tb, ta)
        scores = detector.score_features(table)
        test[attack] = detection_metrics(labels, scores, threshold=detector.threshold)
    summary = {"classifier": best, "selection": selection, "test_at_calibrated_threshold": test,
               "n_fit": {"benign": len(b), "adversarial": len(adv)},
               "n_calibration": {"validation_sources": len(validation_benign), "extra_held_out": len(extra)},
               "trained_on": f"{settings.train_attack.upper()}"
                             f"{' and ' + also_train_on[0] if also_train_on else ''} examples of {len(fit_sources)} "
                             f"sources from {', '.join(settings.corpora)} (held-out speakers)",
               "run": str(run_dir)}
    detector.save(detector_dir, metadata={"selection": without_nan(summary)})
    return without_nan(summary)


__all__ = ["calibration_items", "finished_run", "fit_default_detector", "fit_validation_split"]
