"""The Däubener et al. (2020) reproduction's settings: models, attacks, sizes, the paper's numbers.

Every stage is cached under a hash of the settings it depends on (:meth:`Settings.model_key`,
:meth:`Settings.eval_key`, :meth:`Settings.attack_key`).

Example:
    >>> s = Settings.make(quick=True)
    >>> s.n_eval, s.attack.describe()
    (40, '10 iterations of step 0.01, from a random start')
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from ...asr.hybrid.acoustic import DEFAULT_DRAWS
from ...asr.recipes import default_data_root
from ...asr.hybrid.train import TrainConfig
from ...evaluate.tables import AUROC_INTERVAL

NAME = "daubener2020"
#: the same data root as the CLI (``$ASRGUARD_DATA``, else ``../shared/data`` beside the repository)
DEFAULT_DATA_ROOT = default_data_root()
#: The reproduction's models: name -> (acoustic kind, model keyword arguments). ``bnn`` is the
#: paper's (matrix-Gaussian posterior); ``bnn_mf`` the mean-field variant, reported beside it.
MODELS = {"fnn": ("fnn", {}), "ensemble": ("ensemble", {}), "dropout": ("dropout", {}),
          "bnn": ("bnn", {"posterior": "matrix_gaussian"}), "bnn_mf": ("bnn", {"posterior": "mean_field"})}
MODEL_ORDER = tuple(MODELS)
LABELS = {"fnn": "fNN", "ensemble": "deep ensemble", "dropout": "MC dropout", "bnn": "BNN (matrix Gaussian)",
          "bnn_mf": "BNN (mean field)"}
MEASURE_LABELS = {"variance": "Variance", "akld": "aKLD", "akld_pairs": "aKLD (pairs)",
                  "mutual_information": "MI", "entropy": "Entropy"}
#: columns of Tables 2-3, in the paper's order (aKLD (pairs) is ours)
TABLE_MEASURES = ("variance", "akld", "akld_pairs", "mutual_information", "entropy")
#: The paper's numbers (Table 1: accuracy on benign TIDIGITS; Tables 2-3: AUROC, 1000 benign vs 1000 adversarial).
PAPER = {
    "table1": {"fnn": 0.991, "ensemble": 0.994, "dropout": 0.973, "bnn": 0.981},
    "table2": {
        "fnn": {"entropy": 0.989},
        "ensemble": {"variance": 0.455, "akld": 0.892, "mutual_information": 0.993, "entropy": 0.990},
        "dropout": {"variance": 0.637, "akld": 0.443, "mutual_information": 0.498, "entropy": 0.978},
        "bnn": {"variance": 0.667, "akld": 0.777, "mutual_information": 0.794, "entropy": 0.988},
    },
    "table3": {
        "fnn": {"entropy": 0.997},
        "ensemble": {"variance": 0.461, "akld": 0.624, "mutual_information": 0.964, "entropy": 0.996},
        "dropout": {"variance": 0.937, "akld": 0.578, "mutual_information": 0.411, "entropy": 0.991},
        "bnn": {"variance": 0.489, "akld": 0.448, "mutual_information": 0.462, "entropy": 0.998},
    },
    "fig1": "target accuracy at eps >= 0.05: fNN about 50 % higher than the others, which reach 0.4-0.7",
}
#: The bar on the headline entropy AUROC (paper's attack, headline audio level, ε = BAR_EPS).
BAR_AUROC, BAR_EPS = 0.97, 0.02


def paper_value(table: str, name: str, measure: str | None = None):
    """The paper's number for one of our models (both BNN variants stand against the paper's BNN).

    Example:
        >>> paper_value("table2", "bnn_mf", "entropy"), paper_value("table1", "fnn")
        (0.988, 0.991)
    """
    values = PAPER[table].get(MODELS[name][0])
    return values if measure is None else (values or {}).get(measure)


@dataclass(frozen=True)
class AttackSpec:
    """One PGD setting: ``iterations`` signed-gradient steps of ``step`` (times ε when ``relative``).

    Example:
        >>> AttackSpec("paper", 40, 0.01, random_start=True).describe()
        '40 iterations of step 0.01, from a random start'
    """

    name: str
    iterations: int
    step: float
    relative: bool = False
    random_start: bool = False

    def step_size(self, eps: float) -> float:
        return self.step * eps if self.relative else self.step

    def describe(self) -> str:
        return (f"{self.iterations} iterations of step {self.step:g}{'·ε' if self.relative else ''}"
                + (", from a random start" if self.random_start else ""))


#: The attack the paper's public code ran: it left step size and iteration count unset, so cleverhans
#: 2.1's MadryEtAl defaults applied (``nb_iter`` = 40, ``eps_iter`` = 0.01 absolute, ``rand_init`` = True:
#: a uniform start in [-ε, ε]).
PAPER_ATTACK = AttackSpec("paper", 40, 0.01, random_start=True)
#: Our converged attack (the earlier headline): 30 steps of 0.1·ε from δ = 0.
CONVERGED_ATTACK = AttackSpec("converged", 30, 0.1, relative=True)


@dataclass
class Settings:
    """Everything that determines the results; stages are cached under a hash of the relevant part."""

    quick: bool = False
    seed: int = 0
    # training data and recipe
    n_mixed: int = 2000
    n_speech_commands: int = 500
    n_tts: int = 500
    augment_copies: int = 1
    n_dev: int = 300
    train: TrainConfig = field(default_factory=TrainConfig)
    penalty_grid: tuple = (0.0, 10.0, 20.0, 40.0, 60.0, 80.0, 120.0)
    # evaluation
    n_fit: int = 300
    n_eval: int = 300
    n_sweep: int = 50
    eps_grid: tuple = tuple(round(0.01 * k, 2) for k in range(11))
    table_eps: tuple = (0.05, 0.02)
    #: the headline attack (Tables 2-3, Fig. 1) and the converged one reported beside it (None skips it)
    attack: AttackSpec = PAPER_ATTACK
    converged_attack: AttackSpec | None = CONVERGED_ATTACK
    #: audio levels: every held-out utterance is multiplied by the level before it is attacked. The
    #: front end peak-normalises, so benign features (and scores) do not change, while a fixed absolute
    #: ε grows relative to the speech. Tables 2-3 and Fig. 1 are at ``headline_level`` (on n_eval
    #: utterances); the other levels at the table ε on ``n_level`` utterances.
    levels: tuple = (1.0, 0.5, 0.25, 0.125)
    headline_level: float = 0.25
    n_level: int = 100
    #: how the ensemble is attacked: "average" (the gradient of its 5-member average, as the reference
    #: code) or "member" (one seeded random member per step); the other one is reported beside it
    ensemble_attack: str = "average"
    pgd_single_draw: bool = True  # MC dropout / BNN: one fresh draw per PGD step (the paper's attacker)
    attack_batch: int = 16
    draws: dict = field(default_factory=lambda: {**DEFAULT_DRAWS, "bnn_mf": DEFAULT_DRAWS["bnn"]})
    use_tts: bool = True

    @classmethod
    def make(cls, quick: bool, seed: int = 0) -> "Settings":
        if not quick:
            return cls(quick=False, seed=seed, train=TrainConfig(seed=seed, frontend={"cmn": True}))
        return cls(
            quick=True, seed=seed, n_mixed=300, n_speech_commands=100, n_tts=100, augment_copies=0, n_dev=60,
            train=TrainConfig(seed=seed, epochs_ce=1, epochs_realign=1, frontend={"cmn": True}),
            n_fit=40, n_eval=40, n_sweep=10, n_level=20, penalty_grid=(0.0, 10.0, 40.0, 80.0),
            eps_grid=(0.0, 0.01, 0.02, 0.05, 0.1),
            attack=dataclasses.replace(PAPER_ATTACK, iterations=10),
            converged_attack=dataclasses.replace(CONVERGED_ATTACK, iterations=10), levels=(1.0, 0.25),
        )

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["train"] = self.train.to_dict()
        return d

    def key(self, *names: str) -> str:
        d = self.to_dict()
        blob = json.dumps({n: d[n] for n in names}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def model_key(self) -> str:
        return self.key("seed", "n_mixed", "n_speech_commands", "n_tts", "augment_copies", "n_dev", "train",
                        "penalty_grid", "use_tts")

    @property
    def eval_key(self) -> str:
        return self.key("seed", "n_fit", "n_eval", "draws") + self.model_key

    def attack_key(self, eps: float, attack: AttackSpec, level: float, ensemble: str | None) -> str:
        blob = json.dumps([round(eps, 4), dataclasses.asdict(attack), level, ensemble], sort_keys=True)
        return (self.key("pgd_single_draw", "attack_batch") + self.eval_key
                + hashlib.sha256(blob.encode()).hexdigest()[:16])


__all__ = ["AUROC_INTERVAL", "BAR_AUROC", "BAR_EPS", "CONVERGED_ATTACK", "DEFAULT_DATA_ROOT", "LABELS",
           "MEASURE_LABELS", "MODELS", "MODEL_ORDER", "NAME", "PAPER", "PAPER_ATTACK", "TABLE_MEASURES", "AttackSpec",
           "Settings", "paper_value"]
