"""Reproduction of Däubener et al. (2020): uncertainty of hybrid DNN-HMM acoustic models under PGD.

``run(out_dir, quick=False, data_root=..., seed=0)`` does, with a cache under ``out_dir``:

1. trains (or reloads) five recognisers - fNN, deep ensemble, MC dropout, the paper's BNN
   (matrix-Gaussian posterior) and a mean-field BNN - on connected digits of training speakers
   (:mod:`asrguard.asr.hybrid.train`, one budget for all) and tunes each one's word insertion
   penalty on a development set of *training* speakers;
2. builds two benign sets of connected digits from held-out speakers (FSDD ``theo`` and the
   Speech Commands test speakers): a *fit* set for the one-class detectors and an *eval* set;
3. Table 1: word accuracy of every model on the eval set;
4. Tables 2-3 (the headline): the attack the paper's code ran (cleverhans 2.1 ``MadryEtAl``
   defaults: 40 steps of 0.01 from a random start; the ensemble through its averaged output) on
   the eval set at ``headline_level`` (every utterance multiplied by it), ``eps = 0.05`` and
   ``0.02``; per model and uncertainty measure a Gaussian fitted to benign fit-set scores, AUROC
   of benign eval vs adversarial examples, with word accuracy against the original and the
   target and the perturbation's SNR beside it;
5. the audio-level sweep: the same at every level of ``levels``; the converged attack (30 steps
   of 0.1·ε); the ensemble attacked one member per step;
6. Fig. 1: the paper's attack for ``eps = 0.01 .. 0.10``, word accuracy of the result with
   respect to the original and to the target transcription;
7. Figs. 2-4: entropy histograms, ROC curves, the sweep; ``results.json`` (every number; each
   AUROC with its n a side and a bootstrap interval, ``auroc_ci``) and ``tables.md`` (ours
   beside the paper's; AUROCs from fewer than 20 examples a side marked as smoke tests).

Every stage writes its output atomically (JSON / safetensors) and is skipped when a finished
output with the same settings exists, so an interrupted run resumes where it stopped.

Modules: :mod:`.config` (settings, models, attacks, the paper's numbers), :mod:`.stages`
(the cached stages), :mod:`.scoring` (transcripts, uncertainty, detection AUROCs),
:mod:`.pipeline` (:func:`run`), :mod:`.report` (tables and figures); ``python -m
asrguard.experiments.daubener2020 OUT_DIR [--quick]`` runs it from a shell.

Example:
    >>> results = run("runs/daubener2020-quick", quick=True)  # doctest: +SKIP
"""

from .config import (
    AUROC_INTERVAL, BAR_AUROC, BAR_EPS, CONVERGED_ATTACK, DEFAULT_DATA_ROOT, LABELS, MEASURE_LABELS, MODEL_ORDER,
    MODELS, NAME, PAPER, PAPER_ATTACK, TABLE_MEASURES, AttackSpec, Settings, paper_value,
)
from .pipeline import collect_results, fig1_summary, run, stage_lookup
from .report import EFFECT_HEADERS, level_label, tables_markdown, write_figures
from .scoring import attack_row, detection_by_measure, evaluate_audio, length_sorted_batches, measure_names
from .stages import (
    attack_plan, attack_stage, benign_stage, craft_pgd, held_out_sets, load_stage, model_stage, scaled, training_data,
    write_stage,
)

__all__ = ["AUROC_INTERVAL", "BAR_AUROC", "BAR_EPS", "CONVERGED_ATTACK", "DEFAULT_DATA_ROOT", "EFFECT_HEADERS",
           "LABELS", "MEASURE_LABELS", "MODELS", "MODEL_ORDER", "NAME", "PAPER", "PAPER_ATTACK", "TABLE_MEASURES",
           "AttackSpec", "Settings", "attack_plan", "attack_row", "attack_stage", "benign_stage", "collect_results",
           "craft_pgd", "detection_by_measure", "evaluate_audio", "fig1_summary", "held_out_sets",
           "length_sorted_batches", "level_label", "load_stage", "measure_names", "model_stage", "paper_value", "run",
           "scaled", "stage_lookup", "tables_markdown", "training_data", "write_figures", "write_stage"]
