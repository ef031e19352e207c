"""Each detector's own adaptive attacker, crafted on the comparison's test sources.

The attacker knows the fitted detector (its kind, settings and, for the statistics penalty,
its benign reference) but not its secret randomness: the dropout attacker draws its own masks
(EOT), the transform attacker uses the detector's transforms with BPDA. Each is CW with another
objective, so it works under CW's distortion bound; it attacks the test sources CW succeeded on,
toward CW's own targets, so the two can be compared source by source.

=================  ======================  =====================================================
detector           attack                  what it adds to CW
=================  ======================  =====================================================
``uncertainty``    ``dropout-evasion``     target loss over its own dropout draws, and their
                                           disagreement; success asks the detector's verdict
                                           (``eot-dropout``, which does not ask, is the older one)
``transform``      ``bpda-transform``      target loss on each transformed copy (BPDA where needed)
``distribution``   ``stats-penalty``       a pull of the output statistics toward benign values
``combined``       ``combined-evasion``    the dropout and transform terms above, and target loss
                                           under fresh band-limited noise; success asks the
                                           detector's verdict (with the attacker's own seed)
``noise-flood``    ``eot-noise``           target loss under fresh band-limited noise at the
                                           detector's SNRs; success asks the detector's verdict
``temporal``       ``prefix-consistent``   target loss of the audio's first part toward the
                                           target's first characters; success asks the detector
=================  ======================  =====================================================

Example:
    >>> folder = craft_adaptive("transform", det, rec, sets, "runs/compare", n=30)   # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ...attacks.dropout_evasion import DropoutEvasionAttack, DropoutEvasionConfig
from ...attacks.combined_evasion import CombinedEvasionAttack, CombinedEvasionConfig
from ...attacks.evasion import BPDATransformAttack, BPDATransformConfig
from ...attacks.rival_evasion import FloodEvasionAttack, FloodEvasionConfig, PrefixEvasionAttack, RivalEvasionConfig
from ...attacks.manifest import RUN_FILE
from ...attacks.runner import run_attack
from ...attacks.stats_penalty import StatsPenaltyAttack, StatsPenaltyConfig
from ...attacks.targets import FixedTargets
from ...data.records import Utterance
from .inputs import ComparisonSets, Entry

#: The adaptive attack made against each detector kind.
ADAPTIVE_ATTACKS = {"uncertainty": "dropout-evasion", "transform": "bpda-transform", "distribution": "stats-penalty",
                    "combined": "combined-evasion", "noise-flood": "eot-noise", "temporal": "prefix-consistent"}
#: CW's settings each attacker copies from the run's CW examples, so that "the distortion it needed" is
#: compared with CW's under the same budget and schedule (the attackers' own default stops after 4
#: shrinks of the bound, at -32.7 dB, where CW may go on to -40.5 dB).
SCHEDULE = ("tau_db", "shrink", "max_shrinks", "max_iter", "patience", "learning_rate", "lr_decay", "lr_floor",
            "check_every")
#: Weight of the dropout attacker's disagreement penalty (the mutual information the detector reads).
EOT_GAMMA = 1.0


def adaptive_attack(kind: str, detector, recognizer, benign_rows, seed: int, max_iter: int | None = None, *,
                    schedule: Mapping | None = None):
    """The attack object made against a fitted ``detector`` of ``kind`` (``None`` when there is none).

    ``benign_rows``: the detector's features of its benign training audio (the statistics
    penalty pulls toward their mean). ``schedule``: CW settings (:data:`SCHEDULE`) every attacker
    takes, e.g. :func:`cw_schedule`'s; ``max_iter`` overrides its step count. Without either, the
    attackers' own shorter default (``AdaptiveConfig``).
    """
    common = {**(schedule or {}), **({} if max_iter is None else {"max_iter": max_iter})}
    if kind == "uncertainty":
        config = DropoutEvasionConfig(masks_per_step=4, gamma=EOT_GAMMA, seed=seed, **common)
        return DropoutEvasionAttack(recognizer, config, detector=detector)
    if kind == "transform":
        return BPDATransformAttack(recognizer, BPDATransformConfig.from_detector(detector, seed=seed, **common))
    if kind == "distribution":
        # a logistic detector keeps no benign mean: the attacker takes it from the benign training rows
        config = StatsPenaltyConfig(reference=tuple(map(float, np.mean(benign_rows, axis=0))),
                                    scale=tuple(map(float, detector.scale_)), seed=seed, **common)
        return StatsPenaltyAttack(recognizer, config, detector=detector)
    if kind == "combined":
        config = CombinedEvasionConfig(masks_per_step=4, gamma=EOT_GAMMA, seed=seed, **common)
        return CombinedEvasionAttack(recognizer, config, detector=detector)
    if kind == "noise-flood":
        return FloodEvasionAttack(recognizer, FloodEvasionConfig(seed=seed, **common), detector=detector)
    if kind == "temporal":
        return PrefixEvasionAttack(recognizer, RivalEvasionConfig(seed=seed, **common), detector=detector)
    return None


def cw_schedule(sets: ComparisonSets) -> dict:
    """The :data:`SCHEDULE` settings of the run's CW examples (empty when its folder keeps no config)."""
    run_file = Path(sets.run["attacks"]["cw"]["folder"]) / RUN_FILE
    config = json.loads(run_file.read_text()).get("config", {}) if run_file.is_file() else {}
    return {key: config[key] for key in SCHEDULE if key in config}


def craft_adaptive(kind: str, detector, recognizer, sets: ComparisonSets, out_dir, *, n: int, benign_rows=None,
                   seed: int = 0, max_iter: int | None = None, progress: bool = True) -> Path | None:
    """Run ``kind``'s adaptive attack on ``n`` test sources CW succeeded on, with CW's budget and schedule
    (:func:`cw_schedule`; ``max_iter`` overrides its steps); returns its folder (resumable)."""
    attack = adaptive_attack(kind, detector, recognizer, benign_rows, seed, max_iter, schedule=cw_schedule(sets))
    if attack is None or n <= 0:
        return None
    cw_rows = {e.source: e.record for e in sets.attacks.get("cw", [])}
    sources = [e for e in sets.test_benign if e.source in cw_rows][:n]
    folder = Path(out_dir) / "adaptive" / f"{attack.name}-{attack.config_hash}"
    return attack_toward_cw_targets(attack, sources, cw_rows, folder, progress=progress)


def attack_toward_cw_targets(attack, sources: Sequence[Entry], cw_rows: Mapping[str, Mapping], folder, *,
                             progress: bool = True) -> Path:
    """Run ``attack`` on the benign ``sources``, each toward its CW example's target (``cw_rows`` by
    source id), into ``folder`` (resumable); returns the folder."""
    rate = attack.recognizer.sample_rate
    items = [Utterance.from_waveform(e.id, e.load(), rate, cw_rows[e.id].get("reference", "")) for e in sources]
    sampler = FixedTargets(by_id={e.id: cw_rows[e.id]["target"] for e in sources})
    run_attack(attack, items, Path(folder), sampler=sampler, batch_size=8, progress=progress)
    return Path(folder)


__all__ = ["ADAPTIVE_ATTACKS", "EOT_GAMMA", "SCHEDULE", "adaptive_attack", "attack_toward_cw_targets", "craft_adaptive",
           "cw_schedule"]
