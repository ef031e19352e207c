"""Reproduction of Jayashankar, Le Roux & Moulin (2020): detecting audio attacks from dropout uncertainty.

``run(out_dir, quick=False, seed=0)``:

1. crafts (or reuses) adversarial examples against the shipped CTC model with the attack
   runner (:mod:`asrguard.attacks.runner`): CW, DR, NRR and IA on held-out speech
   (connected FSDD digits of the held-out speaker and Speech Commands words of held-out
   speakers), and the urban-sound attack (US, plain CW) on UrbanSound8K clips;
2. draws ``I = 50`` dropout realisations of every benign source and every *successful*
   adversarial example at ``p = 0.1`` (and ``p = 0.05`` for the benign, CW and DR sets) and
   computes the features of :mod:`asrguard.uncertainty.features`; each item's features are
   cached in its own JSON file (written atomically), so an interrupted run resumes;
3. splits the *sources* 70/30 (an adversarial example always sits with its source), trains
   every classifier on DR examples of the training sources and tests it on CW, DR, NRR and
   IA examples of the test sources (each test set: the successful adversarial examples plus
   their own benign sources, so it is balanced); the ``p = 0.05`` CW column is trained on
   DR at ``p = 0.05``. US is separate, as in the paper: trained and tested on UrbanSound
   (a 70/30 split of its clips); the DR-trained classifiers on US are reported as well;
4. writes ``results.json`` (every classifier × column × metric; each AUROC with its n a side
   and a bootstrap interval, ``auroc_ci``), ``tables.md`` (the paper's Tables 1 and 2 beside
   ours, plus TPR at 1 %/5 % FPR and the attack summary; AUROCs from fewer than 20 examples a
   side marked as smoke tests) and PNGs (Fig. 1 mean uncertainty distributions, entropy
   histograms, ROC curves one panel per set).

:func:`fit_default_detector` turns the cached features of a finished run into the shipped
detector (model selection on a validation split of the training sources).

Modules: :mod:`.config` (settings, the paper's numbers), :mod:`.attacks`, :mod:`.features` and
:mod:`.classifiers` (stages 1-3), :mod:`.pipeline` (:func:`run`), :mod:`.report` (stage 4's
tables and figures), :mod:`.detector` (the shipped detector).

Example:
    >>> results = run("runs/jayashankar2020-quick", quick=True)  # doctest: +SKIP
"""

from .attacks import attack_folder, attack_summary, chosen_attacks, claim_for_setup, craft_attack, successful_examples
from .classifiers import (
    SHORT_TARGET_CHARS, SourceSplit, by_corpus, by_target_length, classifier_stage, evaluate_classifiers, labelled,
    paired, split_sources, train_classifiers,
)
from .config import (
    AUROC_INTERVAL, CLASSIFIERS, COLUMNS, EXTRA_ROWS, METRICS, NAME, PAPER, PAPER_MAX_FILL, PAPER_ROWS, SETUPS,
    SPEECH_ATTACKS, Settings,
)
from .detector import calibration_items, finished_run, fit_default_detector
from .features import FeatureCache, FeatureSet, feature_set, feature_stage
from .pipeline import run
from .report import tables_markdown, write_figures

__all__ = ["AUROC_INTERVAL", "CLASSIFIERS", "COLUMNS", "EXTRA_ROWS", "METRICS", "NAME", "PAPER", "PAPER_MAX_FILL",
           "PAPER_ROWS", "SETUPS", "SHORT_TARGET_CHARS", "SPEECH_ATTACKS", "FeatureCache", "FeatureSet", "Settings",
           "SourceSplit", "attack_folder", "attack_summary", "by_corpus", "by_target_length", "calibration_items",
           "chosen_attacks", "claim_for_setup", "classifier_stage", "craft_attack", "evaluate_classifiers",
           "feature_set", "feature_stage", "finished_run", "fit_default_detector", "labelled", "paired", "run",
           "split_sources", "successful_examples", "tables_markdown", "train_classifiers", "write_figures"]
