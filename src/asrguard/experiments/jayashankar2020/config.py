"""The Jayashankar et al. (2020) reproduction's settings: sizes, columns and rows of the tables, the paper's numbers.

Example:
    >>> s = Settings.make(quick=True)
    >>> s.n_sources, s.n_realizations, [label for label, _, _ in COLUMNS][:3]
    (12, 50, ['CW p=0.05', 'CW', 'DR'])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ...asr.ctc import seconds_for_target
from ...attacks.targets import PAPER_TARGET
from ...errors import ConfigError
from ...evaluate.tables import AUROC_INTERVAL
from ...uncertainty.features import FeatureExtractor

NAME = "jayashankar2020"
SPEECH_ATTACKS = ("cw", "dr", "nrr", "ia")
#: Columns of the paper's tables: (label, attack tested, defence p).
COLUMNS = (("CW p=0.05", "cw", 0.05), ("CW", "cw", 0.1), ("DR", "dr", 0.1), ("NRR", "nrr", 0.1),
           ("IA", "ia", 0.1), ("US", "us", 0.1))
#: Rows of the paper's tables, then our extra classifiers.
PAPER_ROWS = (("P^prob", "DS", "prob-ds"), ("P^prob", "SVM-4", "prob-svm4"), ("P^prob", "DecTree", "prob-dectree"),
              ("P^char", "DS", "char-ds"), ("P^char", "SVM-4", "char-svm4"), ("P^char", "SVM-F", "char-svmf"))
EXTRA_ROWS = (("P^char", "DecTree", "char-dectree"), ("entropy", "DS", "entropy-ds"),
              ("P^char + entropy", "SVM (combined)", "combined"),
              ("P^char + entropy", "one-class Gaussian", "gaussian"),
              ("all features", "SVM (all)", "all-svm"))
CLASSIFIERS = tuple(r[2] for r in PAPER_ROWS + EXTRA_ROWS)
#: Table 1 (accuracy, %) and Table 2 (AUC) of the paper; columns as in COLUMNS.
PAPER = {
    "accuracy": {
        "prob-ds": (71.7, 83.3, 82.5, 75.5, 91.0, 90.4), "prob-svm4": (66.7, 80.8, 68.0, 53.3, 68.0, 64.4),
        "prob-dectree": (65.0, 80.8, 72.0, 70.0, 73.3, 91.8), "char-ds": (72.3, 96.5, 81.0, 81.0, 92.0, 79.0),
        "char-svm4": (76.7, 96.5, 88.5, 88.5, 92.0, 93.9), "char-svmf": (74.0, 85.8, 86.5, 87.5, 88.3, 83.0),
    },
    "auroc": {
        "prob-ds": (0.72, 0.85, 0.83, 0.84, 0.82, 0.91), "prob-svm4": (0.84, 0.91, 0.88, 0.89, 0.90, 0.98),
        "prob-dectree": (0.72, 0.85, 0.83, 0.84, 0.82, 0.91), "char-ds": (0.72, 0.82, 0.81, 0.82, 0.73, 0.86),
        "char-svm4": (0.88, 0.92, 0.95, 0.93, 0.95, 0.94), "char-svmf": (0.75, 0.91, 0.92, 0.93, 0.94, 0.74),
    },
    "setup": "Mozilla DeepSpeech, 500 CommonVoice samples (~5 s), 70/30 split, I = 50, trained on DR, "
             "target 'okay google unlock phone and delete files'",
}
METRICS = ("accuracy", "auroc", "tpr_at_1pct_fpr", "tpr_at_5pct_fpr")
#: Reproduction setups (see :meth:`Settings.make`).
SETUPS = ("mixed", "paper")
#: The paper setup's target fill: 41 characters in 2.8 s, 1.5 times denser than ``mixed`` allows
#: (our sources are shorter than the paper's ~5 s CommonVoice clips).
PAPER_MAX_FILL = 0.3


@dataclass
class Settings:
    """Everything that determines the results."""

    quick: bool = False
    seed: int = 0
    corpora: tuple = ("fsdd-digits", "speech-commands")
    n_sources: int = 100
    n_urban: int = 100
    n_realizations: int = 50
    p_main: float = 0.1
    p_low: float = 0.05
    test_fraction: float = 0.3
    train_attack: str = "dr"
    targets: str = "mixed"
    max_fill: float = 0.2
    batch_size: int = 32
    attack_overrides: dict = field(default_factory=dict)
    min_seconds: float | None = None
    setup: str = "mixed"
    masks: str = "iid"  # how the I dropout masks relate: "iid" (the paper's) or "balanced" (asrguard.asr.ctc.masks)

    @classmethod
    def make(cls, quick: bool, seed: int = 0, setup: str = "mixed") -> "Settings":
        """The full or ``quick`` sizes of one of :data:`SETUPS`.

        ``mixed``: held-out FSDD connected digits and Speech Commands words, each with a
        target sized to it (one-word commands for one-word clips). ``paper``: the paper's one
        41-character target on every source, so only connected digits long enough to carry
        it at 15 characters a second (2.8 s) and UrbanSound clips as long.
        """
        if setup not in SETUPS:
            raise ConfigError(f"unknown setup {setup!r}; choose from {', '.join(SETUPS)}")
        size = {"quick": quick, "seed": seed, "setup": setup}
        if quick:
            # a smoke test of the whole pipeline: one attack batch per attack, shorter optimisation
            fast = {name: {"max_iter": 300} for name in SPEECH_ATTACKS + ("us",)}
            fast["ia"]["stage2_iter"] = 60
            size.update(n_sources=12, n_urban=6, batch_size=12, attack_overrides=fast)
        if setup == "paper":
            size.update(corpora=("fsdd-digits", "sc-digits"), targets="paper", max_fill=PAPER_MAX_FILL,
                        min_seconds=round(seconds_for_target(PAPER_TARGET) / PAPER_MAX_FILL, 2))
        return cls(**size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def extractor(self, p: float | None = None) -> FeatureExtractor:
        """The uncertainty features' extractor these settings draw with (at ``p``, default ``p_main``)."""
        return FeatureExtractor(n=self.n_realizations, p=self.p_main if p is None else p, seed=self.seed,
                                masks=self.masks)


__all__ = ["AUROC_INTERVAL", "CLASSIFIERS", "COLUMNS", "EXTRA_ROWS", "METRICS", "NAME", "PAPER", "PAPER_MAX_FILL",
           "PAPER_ROWS", "SETUPS", "SPEECH_ATTACKS", "Settings"]
