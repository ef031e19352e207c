"""Attacks on speech recognisers, written against the Recognizer interface only.

* :mod:`.cw` — Carlini & Wagner (CW), dropout-robust (DR), noise-reduction-robust (NRR) and
  urban-sound (US) attacks;
* :mod:`.imperceptible` — Qin et al.'s psychoacoustic two-stage attack (IA);
* :mod:`.universal` — one untargeted perturbation for many inputs;
* :mod:`.pgd` — targeted PGD toward forced-alignment (HMM state) targets, for hybrid recognisers;
* :mod:`.losses` — the loss terms the attacks combine;
* :mod:`.targets` — target transcripts sized to each utterance;
* :mod:`.runner` — WAV + JSONL output that resumes, and ``report``.

Example:
    >>> from asrguard.attacks import CWAttack, CWConfig               # doctest: +SKIP
    >>> results = CWAttack(recognizer).generate([waveform], ["stop"])  # doctest: +SKIP
"""

import importlib

# exported lazily, so that `asrguard --help` does not import torch through the CLI registration
_EXPORTS = {
    "Attack": ".base", "AttackConfig": ".base", "AttackResult": ".base", "config_hash": ".base",
    "CWAttack": ".cw", "CWConfig": ".cw", "DRAttack": ".cw", "DRConfig": ".cw", "NRRAttack": ".cw",
    "NRRConfig": ".cw", "USAttack": ".cw",
    "IAConfig": ".imperceptible", "ImperceptibleAttack": ".imperceptible", "masking_threshold": ".imperceptible",
    "PGDAttack": ".pgd", "PGDConfig": ".pgd",
    "report": ".runner", "run_attack": ".runner",
    "PAPER_TARGET": ".targets", "TargetSampler": ".targets",
    "UniversalAttack": ".universal", "UniversalConfig": ".universal",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
