"""Stage 3 of the Jayashankar et al. (2020) reproduction: classifiers trained on DR, tested on every attack.

Sources are split 70/30 (an adversarial example always sits with its source); each test set is
the successful adversarial examples of the test sources plus exactly their benign sources.

Example:
    >>> benign = FeatureSet(list("ab"), list("ab"), FeatureTable({"entropy": np.arange(2.0)}), [None] * 2)
    >>> [len(s) for s in paired(benign, benign, {"a"})]
    [1, 1]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ...detect.classifiers import make_classifier
from ...evaluate.detection import detection_metrics, split_by_source
from ...uncertainty.features import FeatureTable
from .config import CLASSIFIERS, COLUMNS, Settings
from .features import FeatureSet


def labelled(benign: FeatureSet, adversarial: FeatureSet) -> tuple[FeatureTable, np.ndarray]:
    """Both sets' features in one table, with labels 0 (benign) and 1 (adversarial).

    Example:
        >>> s = FeatureSet(["a"], ["a"], FeatureTable({"entropy": np.zeros(1)}), [None])
        >>> labelled(s, s)[1].tolist()
        [0, 1]
    """
    table = FeatureTable.concat([benign.table, adversarial.table])
    labels = np.r_[np.zeros(len(benign), dtype=int), np.ones(len(adversarial), dtype=int)]
    return table, labels


def paired(benign: FeatureSet, adversarial: FeatureSet, sources: set) -> tuple[FeatureSet, FeatureSet]:
    """Successful adversarial examples of ``sources`` and exactly their benign sources.

    Example:
        >>> benign = FeatureSet(list("abc"), list("abc"), FeatureTable({"entropy": np.arange(3.0)}), [None] * 3)
        >>> adversarial = FeatureSet(list("bc"), list("bc"), FeatureTable({"entropy": np.ones(2)}), [None] * 2)
        >>> [s.ids for s in paired(benign, adversarial, {"a", "b"})]
        [['b'], ['b']]
    """
    adv = adversarial.select(sources)
    return benign.select(set(adv.sources)), adv


def evaluate_classifiers(classifiers: dict, benign: FeatureSet, adversarial: FeatureSet) -> dict:
    """Detection metrics of every trained classifier (``None``: untrained) on one test set.

    Besides the metrics, each entry keeps ``_scores``, ``_labels`` and ``_sources`` for the
    breakdowns and figures (keys starting with ``_`` stay out of ``results.json``).

    Example:
        >>> cell = evaluate_classifiers(train_classifiers(["char-svm4"], b, adv, 0), tb, tadv)  # doctest: +SKIP
        >>> cell["char-svm4"]["auroc"]  # doctest: +SKIP
        0.93
    """
    if len(benign) < 1 or len(adversarial) < 1:
        return {name: {"n_benign": len(benign), "n_adversarial": len(adversarial)} for name in classifiers}
    table, labels = labelled(benign, adversarial)
    out = {}
    for name, clf in classifiers.items():
        if clf is None:
            out[name] = {"n_benign": len(benign), "n_adversarial": len(adversarial)}
            continue
        scores = clf.decision_function(table)
        out[name] = {**detection_metrics(labels, scores, threshold=0.0, interval=True),
                     "_scores": scores, "_labels": labels, "_sources": list(benign.sources) + list(adversarial.sources)}
    return out


def by_corpus(cell: dict) -> dict:
    """Metrics of every classifier of one column, per source corpus (the id's prefix).

    Example:
        >>> sorted(by_corpus(cells["DR"]))  # doctest: +SKIP
        ['fsdd', 'sc']
    """
    out: dict = {}
    for name, m in cell.items():
        if "_scores" not in m:
            continue
        corpora = np.array([str(s).split(":")[0] for s in m["_sources"]])
        for corpus in sorted(set(corpora.tolist())):
            keep = corpora == corpus
            out.setdefault(corpus, {})[name] = detection_metrics(m["_labels"][keep], m["_scores"][keep],
                                                                 interval=True)
    return out


#: Targets shorter than this many characters count as "short" in the breakdown by target length.
SHORT_TARGET_CHARS = 7


def by_target_length(cell: dict, rows: dict) -> dict:
    """Metrics per classifier with the adversarial side split into short and long targets.

    Each half is scored against all the benign sources of the cell: a one- or two-word
    target ("go", "stop") leaves little room for dropout transcripts to disagree, so it is
    the hard case for ``P^char``; the paper only used a 41-character target.

    Example:
        >>> sorted(by_target_length(cells["DR"], crafted["dr"]["rows"]))  # doctest: +SKIP
        ['target < 7 chars', 'target >= 7 chars']
    """
    out: dict = {}
    for name, m in cell.items():
        if "_scores" not in m:
            continue
        labels, scores = m["_labels"], m["_scores"]
        lengths = np.array([len((rows.get(s) or {}).get("target") or "") if y == 1 else -1
                            for s, y in zip(m["_sources"], labels)])
        short = (lengths >= 0) & (lengths < SHORT_TARGET_CHARS)
        for label, keep_adv in ((f"target < {SHORT_TARGET_CHARS} chars", short),
                                (f"target >= {SHORT_TARGET_CHARS} chars", lengths >= SHORT_TARGET_CHARS)):
            keep = (labels == 0) | keep_adv
            if keep_adv.sum() and (labels == 0).sum():
                out.setdefault(label, {})[name] = detection_metrics(labels[keep], scores[keep], interval=True)
    return out


def train_classifiers(names: Sequence[str], benign: FeatureSet, adversarial: FeatureSet, seed: int) -> dict:
    """``{name: fitted classifier}``; ``None`` where a side has fewer than two examples.

    Example:
        >>> sorted(train_classifiers(["char-svm4", "all-svm"], benign, adversarial, seed=0))  # doctest: +SKIP
        ['all-svm', 'char-svm4']
    """
    trained = {}
    for name in names:
        if len(benign) < 2 or len(adversarial) < 2:
            trained[name] = None
            continue
        table, labels = labelled(benign, adversarial)
        trained[name] = make_classifier(name, seed=seed).fit(table, labels)
    return trained


@dataclass
class SourceSplit:
    """Source ids on each side of the 70/30 splits: speech (``train``, ``test``) and UrbanSound clips."""

    train: set
    test: set
    urban_train: set
    urban_test: set


def split_sources(speech: list, urban: list, settings: Settings) -> SourceSplit:
    """Split the speech sources and, separately, the UrbanSound clips by source (seeded).

    Example:
        >>> split = split_sources(speech, urban, settings)  # doctest: +SKIP
        >>> len(split.train), len(split.test)  # doctest: +SKIP
        (8, 4)
    """
    train_mask, test_mask = split_by_source([i.id for i in speech], settings.test_fraction, settings.seed)
    speech_ids = [i.id for i in speech]
    train_sources = {s for s, m in zip(speech_ids, train_mask) if m}
    test_sources = {s for s, m in zip(speech_ids, test_mask) if m}
    us_train, us_test = set(), set()
    if urban:
        us_train_mask, us_test_mask = split_by_source([i.id for i in urban], settings.test_fraction, settings.seed)
        us_train = {i.id for i, m in zip(urban, us_train_mask) if m}
        us_test = {i.id for i, m in zip(urban, us_test_mask) if m}
    return SourceSplit(train_sources, test_sources, us_train, us_test)


def classifier_stage(sets: dict, split: SourceSplit, settings: Settings, chosen: Sequence[str]) -> dict:
    """Train on the training attack of the training sources (US: on UrbanSound) and fill every column.

    Returns ``{column label: evaluate_classifiers(...)}``; ``US (DR-trained)`` holds the
    speech-trained classifiers on UrbanSound.

    Example:
        >>> cells = classifier_stage(sets, split, settings, ("cw", "dr"))  # doctest: +SKIP
        >>> sorted(cells)  # doctest: +SKIP
        ['CW', 'CW p=0.05', 'DR']
    """
    trained = {}
    for p in (settings.p_main, settings.p_low):
        benign, adversarial = paired(sets[("benign", p)], sets[(settings.train_attack, p)], split.train)
        trained[p] = train_classifiers(CLASSIFIERS, benign, adversarial, settings.seed)
    if ("benign-us", settings.p_main) in sets:  # UrbanSound clips were loaded
        us_benign_train, us_adv_train = paired(sets[("benign-us", settings.p_main)], sets[("us", settings.p_main)],
                                               split.urban_train)
        trained_us = train_classifiers(CLASSIFIERS, us_benign_train, us_adv_train, settings.seed)

    cells: dict = {}
    for label, attack, p in COLUMNS:
        if attack not in chosen:
            continue
        if attack == "us":
            benign, adversarial = paired(sets[("benign-us", p)], sets[("us", p)], split.urban_test)
            cells[label] = evaluate_classifiers(trained_us, benign, adversarial)
            cells["US (DR-trained)"] = evaluate_classifiers(trained[p], benign, adversarial)
        else:
            benign, adversarial = paired(sets[("benign", p)], sets[(attack, p)], split.test)
            cells[label] = evaluate_classifiers(trained[p], benign, adversarial)
    return cells


__all__ = ["SHORT_TARGET_CHARS", "SourceSplit", "by_corpus", "by_target_length", "classifier_stage",
           "evaluate_classifiers", "labelled", "paired", "split_sources", "train_classifiers"]
