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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..asr.base import AudioBatch
from ..asr.hybrid.acoustic import DEFAULT_DRAWS
from ..asr.hybrid.recognizer import HybridRecognizer
from ..asr.hybrid.train import (
    TrainConfig, Utterances, build_dev_set, build_training_set, compute_frames, connected_digits, digit_records,
    train_recognizer, tune_insertion_penalty, word_accuracy,
)
from ..attacks.pgd import PGD, random_digit_targets
from ..audio import snr_db
from ..detect.gaussian import OneClassGaussian
from ..errors import ConfigError, DataError, ModelFileError
from ..fileio import atomic_write_text
from ..evaluate.detection import AUROC_CI_LEVEL, AUROC_CI_RESAMPLES, AUROC_CI_SEED, auroc_interval
from ..evaluate.tables import SMOKE_TEST_BELOW, AurocCells
from ..uncertainty.measures import DETERMINISTIC_MEASURES, MEASURES, utterance_scores

log = logging.getLogger(__name__)

NAME = "daubener2020"
DEFAULT_DATA_ROOT = Path("../shared/data")
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
#: How every ``auroc_ci`` of ``results.json`` was made (next to each: ``n_adversarial`` and ``n_benign``).
AUROC_INTERVAL = {"method": "percentile bootstrap over examples, each side resampled separately",
                  "level": AUROC_CI_LEVEL, "n_resamples": AUROC_CI_RESAMPLES, "seed": AUROC_CI_SEED,
                  "smoke_test_below": SMOKE_TEST_BELOW}
#: The bar on the headline entropy AUROC (paper's attack, headline audio level, ε = BAR_EPS).
BAR_AUROC, BAR_EPS = 0.97, 0.02


def paper_value(table: str, name: str, measure: str | None = None):
    """The paper's number for one of our models (both BNN variants stand against the paper's BNN)."""
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


# ------------------------------------------------------------------------------------ helpers
def _atomic_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, default=_json_default)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"cannot serialise {type(x).__name__}")


def _load_stage(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if data.get("key") == key else None


class _Progress:
    """Thin wrapper over rich progress bars (silent when rich is unavailable or disabled)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._progress = None

    def __enter__(self):
        if self.enabled:
            try:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

                self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                          TimeElapsedColumn(), transient=False)
                self._progress.__enter__()
            except ImportError:  # pragma: no cover
                self._progress = None
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def task(self, description: str, total: int) -> Callable[[int], None]:
        if self._progress is None:
            return lambda n=1: None
        task_id = self._progress.add_task(description, total=total)
        return lambda n=1: self._progress.advance(task_id, n)


def _batches(n: int, size: int, lengths: Sequence[int] | None = None) -> list[np.ndarray]:
    order = np.argsort(lengths, kind="stable") if lengths is not None else np.arange(n)
    return [order[i:i + size] for i in range(0, n, size)]


# ------------------------------------------------------------------------------------ stages
def training_data(settings: Settings, data_root: Path, out_dir: Path):
    """The training and development utterances of a run in ``out_dir`` (TTS cached under ``out_dir/cache``)."""
    tts_dir = Path(out_dir) / "cache" / "tts" if settings.use_tts else None
    train = build_training_set(data_root, n_mixed=settings.n_mixed, n_speech_commands=settings.n_speech_commands,
                               n_tts=settings.n_tts, augment_copies=settings.augment_copies, seed=settings.seed,
                               tts_dir=tts_dir)
    return train, build_dev_set(data_root, settings.n_dev, seed=settings.seed, tts_dir=tts_dir)


def _models(out_dir: Path, settings: Settings, data_root: Path, progress: _Progress) -> tuple[dict, dict]:
    """Train (or reload) the recognisers of :data:`MODELS`; returns ``({name: recogniser}, {name: info})``."""
    recognizers, info = {}, {}
    todo = []
    for name in MODEL_ORDER:
        path = out_dir / "models" / name
        try:
            rec = HybridRecognizer.load(path)
            extra = json.loads((path / "config.json").read_text())["extra"]
            if extra.get("key") == settings.model_key and extra.get("model_kwargs") == MODELS[name][1]:
                recognizers[name], info[name] = rec, extra
                continue
        except (ModelFileError, KeyError, OSError, json.JSONDecodeError):
            pass
        todo.append(name)
    if not todo:
        return recognizers, info
    t0 = time.perf_counter()
    train, dev = training_data(settings, data_root, out_dir)
    data_s = time.perf_counter() - t0
    frames = None
    for name in todo:
        kind, kwargs = MODELS[name]
        t0 = time.perf_counter()
        bars: dict = {}

        def bar(description, total, member, _bars=bars, _name=name):
            key = (description, member)
            if key not in _bars:
                _bars[key] = progress.task(f"train {_name}: {description}", total)
            return _bars[key]

        if frames is None:
            from ..asr.hybrid.acoustic import build_acoustic_model

            probe = HybridRecognizer(build_acoustic_model("fnn"), frontend=settings.train.frontend)
            frames = compute_frames(probe, train, progress=progress.task("features (training set)", len(train)))
        rec = train_recognizer(kind, train, settings.train, progress=bar, frames=frames, model_kwargs=kwargs)
        train_s = time.perf_counter() - t0
        scores = tune_insertion_penalty(rec, dev, settings.penalty_grid)
        extra = {"key": settings.model_key, "name": name, "kind": kind, "model_kwargs": kwargs,
                 "train_seconds": train_s, "data_seconds": data_s,
                 "n_train_utterances": len(train), "n_train_frames": frames.n_frames,
                 "dev_accuracy_by_penalty": {str(k): v for k, v in scores.items()},
                 "insertion_penalty": rec.hmm.insertion_penalty, "train_config": settings.train.to_dict()}
        rec.save(out_dir / "models" / name, extra=extra)
        recognizers[name], info[name] = rec, extra
    return recognizers, info


def _test_sets(settings: Settings, data_root: Path) -> tuple[Utterances, Utterances]:
    records = [r for r in digit_records(data_root) if r.split == "test"]
    if not records:
        raise DataError(f"{data_root}: no held-out (test-speaker) digit recordings found")
    everything = connected_digits(records, settings.n_fit + settings.n_eval, seed=settings.seed * 10 + 1000,
                                  split="test")
    fit = everything.subset(range(settings.n_fit))
    evaluation = everything.subset(range(settings.n_fit, settings.n_fit + settings.n_eval))
    return fit, evaluation


def _measure_names(kind: str) -> tuple[str, ...]:
    return DETERMINISTIC_MEASURES if kind == "fnn" else MEASURES


def evaluate_audio(rec: HybridRecognizer, waveforms: Sequence, n_draws: int, seed: int, *,
                   batch_size: int = 8, tick: Callable[[int], None] | None = None) -> dict:
    """Transcripts (Viterbi on the mean of ``n_draws`` draws) and max-over-frames uncertainty scores."""
    names = _measure_names(rec.kind)
    transcripts: list[str | None] = [None] * len(waveforms)
    scores = {m: [math.nan] * len(waveforms) for m in names}
    lengths = [len(w) for w in waveforms]
    for index in _batches(len(waveforms), batch_size, lengths):
        batch = AudioBatch.from_waveforms([waveforms[i] for i in index], rec.sample_rate)
        draws, frames = rec.draws(batch, n_draws, seed=seed)
        mean = torch.logsumexp(draws, dim=0) - math.log(draws.shape[0])
        texts = rec.decode(mean, frames)
        values = utterance_scores(log_probs=draws.transpose(0, 1), lengths=frames, measures=names)
        for k, i in enumerate(index):
            transcripts[i] = texts[k]
            for m in names:
                scores[m][i] = float(values[m][k])
        if tick:
            tick(len(index))
    return {"transcripts": transcripts, "scores": scores}


def _benign(out_dir, settings, name, rec, fit, evaluation, progress) -> dict:
    path = out_dir / "stages" / f"benign_{name}.json"
    key = settings.eval_key
    cached = _load_stage(path, key)
    if cached is not None:
        return cached
    n = settings.draws[name]
    t0 = time.perf_counter()
    tick = progress.task(f"benign {LABELS[name]}", len(fit) + len(evaluation))
    out_fit = evaluate_audio(rec, fit.waveforms, n, settings.seed, tick=tick)
    out_eval = evaluate_audio(rec, evaluation.waveforms, n, settings.seed, tick=tick)
    data = {"key": key, "kind": rec.kind, "n_draws": n, "fit": out_fit, "eval": out_eval,
            "accuracy": word_accuracy(evaluation.transcripts, out_eval["transcripts"]),
            "accuracy_fit_set": word_accuracy(fit.transcripts, out_fit["transcripts"]),
            "seconds": time.perf_counter() - t0}
    _atomic_json(path, data)
    return data


def scaled(waveforms: Sequence, level: float) -> list[np.ndarray]:
    """Every waveform multiplied by ``level`` (float32): the audio-level sweep's inputs."""
    return [(np.asarray(w, dtype=np.float32) * np.float32(level)).astype(np.float32) for w in waveforms]


def craft_pgd(rec: HybridRecognizer, waveforms: Sequence, targets: Sequence[str], eps: float, settings: Settings, *,
              attack: AttackSpec | None = None, ensemble: str | None = None,
              tick: Callable[[int], None] | None = None) -> tuple[list[np.ndarray], list[float]]:
    """The reproduction's PGD (its batches and seeds) on ``waveforms``: adversarial audio and max |δ| per item.

    ``attack`` defaults to the headline attack (``settings.attack``). MC dropout and BNN
    gradients come from one fresh draw per step (``settings.pgd_single_draw``); the ensemble's
    from its averaged output (``ensemble="average"``) or one random member per step
    (``"member"``); ``ensemble`` defaults to ``settings.ensemble_attack``.
    """
    attack = attack or settings.attack
    ensemble = ensemble or settings.ensemble_attack
    if ensemble not in ("average", "member"):
        raise ConfigError(f"ensemble attack must be 'average' or 'member', got {ensemble!r}")
    if rec.kind == "ensemble":
        stochastic = ensemble == "member"
    else:
        stochastic = settings.pgd_single_draw and rec.kind != "fnn"
    adversarial: list = [None] * len(waveforms)
    max_delta = [0.0] * len(waveforms)
    for b, index in enumerate(_batches(len(waveforms), settings.attack_batch, [len(w) for w in waveforms])):
        batch = AudioBatch.from_waveforms([waveforms[i] for i in index], rec.sample_rate)
        pgd = PGD(rec, eps=eps, step_size=attack.step_size(eps), iterations=attack.iterations, stochastic=stochastic,
                  random_init=attack.random_start, seed=settings.seed * 100_000 + b)
        progress = (lambda k, size=len(index): tick(k * size)) if tick else None
        result = pgd.run(batch, [targets[i] for i in index], progress=progress)
        for k, i in enumerate(index):
            adversarial[i] = result.adversarial.unbatch()[k]
            max_delta[i] = result.max_abs_delta()[k]
    return adversarial, max_delta


def _attack(out_dir, settings, name, rec, evaluation, targets, eps, n, progress, *, attack: AttackSpec,
            level: float, ensemble: str | None = None) -> dict:
    """PGD on the first ``n`` eval utterances at audio ``level``; transcripts, scores, accuracies, SNR."""
    ensemble = (ensemble or settings.ensemble_attack) if rec.kind == "ensemble" else None
    suffix = f"_{attack.name}_level{level:g}" + (f"_{ensemble}" if ensemble else "")
    path = out_dir / "stages" / f"attack_{name}_eps{eps:.2f}{suffix}.json"
    key = settings.attack_key(eps, attack, level, ensemble)
    cached = _load_stage(path, key)
    if cached is not None and cached.get("n") == n:
        return cached
    t0 = time.perf_counter()
    step = attack.step_size(eps)
    tick = progress.task(f"PGD {LABELS[name]} eps={eps:.2f} level={level:g} {attack.name}"
                         + (f" ({ensemble})" if ensemble else ""), n * attack.iterations)
    originals = scaled(evaluation.waveforms[:n], level)
    adversarial, max_delta = craft_pgd(rec, originals, targets, eps, settings, attack=attack,
                                       ensemble=ensemble or "average", tick=tick)
    evaluated = evaluate_audio(rec, adversarial, settings.draws[name], settings.seed)
    references = evaluation.transcripts[:n]
    data = {"key": key, "name": name, "kind": rec.kind, "eps": eps, "n": n, "level": level,
            "attack": dataclasses.asdict(attack), "step_size": step, "iterations": attack.iterations,
            "random_start": attack.random_start, "ensemble_attack": ensemble, "targets": list(targets[:n]),
            "max_abs_delta": max_delta, "peak": [float(np.max(np.abs(x))) for x in originals],
            "snr_db": [snr_db(x, a - x) for x, a in zip(originals, adversarial)],
            "transcripts": evaluated["transcripts"], "scores": evaluated["scores"],
            "accuracy_original": word_accuracy(references, evaluated["transcripts"]),
            "accuracy_target": word_accuracy(list(targets[:n]), evaluated["transcripts"]),
            "target_exact_match": float(np.mean([t == h for t, h in zip(targets[:n], evaluated["transcripts"])])),
            "seconds": time.perf_counter() - t0}
    _atomic_json(path, data)
    return data


def _detection(benign: dict, attacked: dict, kind: str, n_benign: int | None = None) -> dict:
    """AUROC per measure of a Gaussian fitted to benign fit-set scores; ROC curves for plotting."""
    out = {}
    n = attacked["n"]
    for m in _measure_names(kind):
        fit_scores = np.asarray(benign["fit"]["scores"][m])
        det = OneClassGaussian().fit(fit_scores)
        ben = np.asarray(benign["eval"]["scores"][m][:n_benign])
        adv = np.asarray(attacked["scores"][m][:n])
        fpr, tpr, _ = det.roc(ben, adv)
        labels = np.r_[np.zeros(len(ben), dtype=int), np.ones(len(adv), dtype=int)]
        interval = auroc_interval(labels, np.r_[det.score(ben), det.score(adv)])
        out[m] = {"auroc": det.auroc(ben, adv), "auroc_ci": _finite_or_none(interval),
                  "n_benign": len(ben), "n_adversarial": len(adv),
                  "benign_mean": float(ben.mean()), "adversarial_mean": float(adv.mean()),
                  "fit_mean": float(det.mean_[0]), "fit_std": float(math.sqrt(det.covariance_[0, 0])),
                  "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()}}
    return out


def attack_row(benign: dict, attacked: dict, kind: str) -> dict:
    """One row of a results table: the attack's effect (accuracies, SNR) and AUROC per measure."""
    det = _detection(benign, attacked, kind)
    snr = np.asarray(attacked["snr_db"], dtype=float)
    return {"n_adversarial": attacked["n"], "n_benign": det["entropy"]["n_benign"], "level": attacked["level"],
            "accuracy_original": attacked["accuracy_original"], "accuracy_target": attacked["accuracy_target"],
            "target_exact_match": attacked["target_exact_match"],
            "snr_db_mean": float(np.mean(snr)), "snr_db_median": float(np.median(snr)),
            "peak_median": float(np.median(attacked["peak"])),
            "auroc": {m: v["auroc"] for m, v in det.items()},
            "auroc_ci": {m: v["auroc_ci"] for m, v in det.items()},
            "entropy_mean": {"benign": det["entropy"]["benign_mean"],
                             "adversarial": det["entropy"]["adversarial_mean"]}}


def _finite_or_none(values) -> list:
    """``results.json`` is written without NaN: an undefined bound becomes ``None``."""
    return [float(v) if math.isfinite(v) else None for v in values]


# ------------------------------------------------------------------------------------ reporting
def level_label(level: float) -> str:
    """An audio level as a fraction of our recordings' own level.

    Example:
        >>> [level_label(x) for x in (1.0, 0.5, 0.25, 0.125)]
        ['1', '1/2', '1/4', '1/8']
    """
    return str(Fraction(level).limit_denominator(1024))


def _figures(out_dir: Path, results: dict, headline_scores: dict) -> list[str]:
    """Figs. 1-3 (paper's attack, headline level) and the audio-level sweep; ``headline_scores[(name, eps)]``
    holds the attacked audio's entropy scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..evaluate.plots import distinct_styles

    written = []
    sweep = results["fig1"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for name, style in zip(MODEL_ORDER, distinct_styles(len(MODEL_ORDER))):
        eps = [p["eps"] for p in sweep[name]]
        axes[0].plot(eps, [p["accuracy_original"] for p in sweep[name]], label=LABELS[name], **style)
        axes[1].plot(eps, [p["accuracy_target"] for p in sweep[name]], label=LABELS[name], **style)
    level = level_label(results["headline"]["level"])
    for ax, title in zip(axes, ("w.r.t. original transcription", "w.r.t. target transcription")):
        ax.set_title(f"Word accuracy {title}", fontsize=10)
        ax.set_xlabel(f"ε (L∞, float scale); audio at level {level}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("word accuracy")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, out_dir / "fig1_accuracy_vs_eps.png"))

    for eps_name, per_model in results["detection"].items():
        eps = float(eps_name)
        fig, axes = plt.subplots(1, len(MODEL_ORDER), figsize=(3.6 * len(MODEL_ORDER), 3.4))
        for ax, name in zip(axes, MODEL_ORDER):
            benign = results["benign_entropy"][name]
            adv = headline_scores[(name, eps_name)]
            bins = np.linspace(min(min(benign), min(adv)), max(max(benign), max(adv)), 40)
            ax.hist(benign, bins=bins, alpha=0.6, label="benign")
            ax.hist(adv, bins=bins, alpha=0.6, label="adversarial")
            ax.set_title(f"{LABELS[name]}, ε={eps:.2f}", fontsize=9)
            ax.set_xlabel("max-over-frames entropy (nats)")
        axes[0].set_ylabel("utterances")
        axes[0].legend()
        fig.tight_layout()
        written.append(_save(fig, out_dir / f"fig2_entropy_histograms_eps{eps:.2f}.png"))

        fig, axes = plt.subplots(1, len(MODEL_ORDER), figsize=(3.6 * len(MODEL_ORDER), 3.6))
        for ax, name in zip(axes, MODEL_ORDER):
            per_measure = per_model[name]
            # measures often give the same curve (all near the top-left corner): the styles keep them apart
            for (m, cell), style in zip(per_measure.items(), distinct_styles(len(per_measure))):
                ax.plot(cell["roc"]["fpr"], cell["roc"]["tpr"], label=f"{MEASURE_LABELS[m]} ({cell['auroc']:.3f})",
                        **style)
            ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
            entropy = per_measure["entropy"]
            ax.set_title(f"{LABELS[name]}, ε={eps:.2f} (n={entropy['n_adversarial']}/{entropy['n_benign']})",
                         fontsize=9)
            ax.set_xlabel("false positive rate")
            ax.legend(fontsize=7, loc="lower right")
        axes[0].set_ylabel("true positive rate")
        fig.tight_layout()
        written.append(_save(fig, out_dir / f"fig3_roc_eps{eps:.2f}.png"))

    levels = results["sweep"]["levels"]
    eps_names = list(results["detection"])
    fig, axes = plt.subplots(2, len(eps_names), figsize=(5 * len(eps_names), 7), squeeze=False)
    for j, eps_name in enumerate(eps_names):
        for name, style in zip(MODEL_ORDER, distinct_styles(len(MODEL_ORDER))):
            rows = [results["sweep"]["tables"][f"{x:g}"][eps_name][name] for x in levels]
            value = np.array([r["auroc"]["entropy"] for r in rows])
            ci = np.array([[np.nan if c is None else c for c in r["auroc_ci"]["entropy"]] for r in rows])
            axes[0, j].errorbar(levels, value, yerr=np.abs(ci.T - value), capsize=3, label=LABELS[name], **style)
            axes[1, j].plot(levels, [r["accuracy_target"] for r in rows], label=LABELS[name], **style)
        axes[0, j].axhline(BAR_AUROC, color="grey", lw=0.8, ls="--")
        axes[0, j].set_title(f"Entropy AUROC, ε = {eps_name} ({results['headline']['attack']['name']} attack)",
                             fontsize=10)
        axes[1, j].set_title(f"Word accuracy w.r.t. the target, ε = {eps_name}", fontsize=10)
        for ax in axes[:, j]:
            ax.set_xscale("log", base=2)
            ax.set_xticks(levels, [level_label(x) for x in levels])
            ax.set_xlabel("audio level (peak scale factor)")
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("AUROC (95 % bootstrap interval)")
    axes[1, 0].set_ylabel("word accuracy")
    axes[0, -1].legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, out_dir / "fig4_audio_level_sweep.png"))
    return written


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        plt.close(fig)
    return path.name


def _fmt(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _effect_cells(row: dict) -> list[str]:
    """What the attack did, beside its AUROCs: accuracies against the original and the target, and SNR."""
    return [_fmt(row["accuracy_original"]), _fmt(row["accuracy_target"]), _fmt(row["target_exact_match"]),
            f"{row['snr_db_mean']:.1f}"]


EFFECT_HEADERS = ("acc. vs original", "acc. vs target", "target exact", "SNR (dB)")


def _rows_table(aurocs: AurocCells, headers: Sequence[str], rows: Sequence[tuple[Sequence[str], dict]]) -> list[str]:
    """A table of attack rows: the given leading cells, the attack's effect, then AUROC per measure."""
    lines = ["| " + " | ".join([*headers, *EFFECT_HEADERS, *(MEASURE_LABELS[m] for m in TABLE_MEASURES)]) + " |",
             "|---" * (len(headers) + len(EFFECT_HEADERS) + len(TABLE_MEASURES)) + "|"]
    for lead, row in rows:
        cells = [aurocs.cell(row["auroc"].get(m), row["auroc_ci"].get(m), row["n_adversarial"], row["n_benign"])
                 for m in TABLE_MEASURES]
        lines.append("| " + " | ".join([*lead, *_effect_cells(row), *cells]) + " |")
    return lines + [""]


def _tables_md(results: dict) -> str:
    s = results["settings"]
    head = results["headline"]
    level = level_label(head["level"])
    attack = AttackSpec(**head["attack"])
    title = [f"# Däubener et al. (2020) reproduction{' (quick)' if s['quick'] else ''}", ""]
    aurocs = AurocCells()
    # the training set holds TTS voices only where an engine was installed: it is larger by their utterances
    plain = (s["n_mixed"] + s["n_speech_commands"]) * (1 + s["augment_copies"])
    sizes = [m.get("n_train_utterances", plain) for m in results.get("models", {}).values()]
    tts = "+ TTS voices in training" if any(n > plain for n in sizes) else "no TTS voices: no engine installed"
    averaged = head["ensemble_attack"] == "average"
    lines = [f"Data: connected digits (1-5) from FSDD + Speech Commands digit words ({tts}); "
             f"held-out speakers: FSDD `theo` and the Speech Commands test speakers. Paper: TIDIGITS. "
             f"Benign fit set {s['n_fit']}, benign eval set {s['n_eval']} utterances. "
             f"Headline attack (the one the paper's code ran): PGD, {attack.describe()}, L∞ on the [-1, 1] scale, "
             f"toward seeded random digit strings force-aligned onto the original audio; the deep ensemble "
             f"through its {head['ensemble_attack']} output"
             f"{' (the averaged 5-member output, as the reference code)' if averaged else ''}"
             f", MC dropout and the BNNs one fresh draw per step. Audio level: every held-out utterance is "
             f"multiplied by {level} before it is attacked (ε is absolute and the front end peak-normalises, "
             f"so this makes ε {20 * math.log10(1 / head['level']):.0f} dB larger relative to the speech and leaves "
             f"benign scores unchanged). The headline level is a setting (`headline_level`) fixed before the "
             f"run; the sweep below reports every level. "
             f"Stages took {results['timing']['pipeline_seconds'] / 60:.1f} min in all; this call "
             f"{results['timing']['total_seconds'] / 60:.1f} min wall, "
             f"{results['timing']['cpu_seconds'] / 60:.1f} min CPU "
             f"(load average at start {results['timing']['load_average_start']}, "
             f"at end {results['timing']['load_average_end']}).", ""]
    lines += ["## Table 1: word accuracy on benign held-out utterances", "",
              "| | " + " | ".join(LABELS[k] for k in MODEL_ORDER) + " |", "|---" * (len(MODEL_ORDER) + 1) + "|"]
    lines.append("| ours | " + " | ".join(_fmt(results["table1"][k]["accuracy"]) for k in MODEL_ORDER) + " |")
    lines.append("| paper | " + " | ".join(_fmt(paper_value("table1", k)) for k in MODEL_ORDER) + " |")
    lines += ["", "Both BNN rows stand against the paper's BNN (matrix-Gaussian posterior).", ""]
    for number, eps in (("2", 0.05), ("3", 0.02)):
        name = f"{eps:.2f}"
        if name not in head["tables"]:
            continue
        lines += [f"## Table {number}: AUROC at ε = {eps}, the paper's attack, audio level {level} (ours / paper)", "",
                  "| | " + " | ".join(MEASURE_LABELS[m] for m in TABLE_MEASURES) + " | "
                  + " | ".join(EFFECT_HEADERS) + " |", "|---" * (len(TABLE_MEASURES) + len(EFFECT_HEADERS) + 1) + "|"]
        for kind in MODEL_ORDER:
            row = head["tables"][name][kind]
            cells = []
            for m in TABLE_MEASURES:
                ours = aurocs.cell(row["auroc"].get(m), row["auroc_ci"].get(m), row["n_adversarial"], row["n_benign"])
                cells.append(f"{ours} / {_fmt(paper_value(f'table{number}', kind, m))}" if m != "akld_pairs" else ours)
            lines.append(f"| {LABELS[kind]} | " + " | ".join(cells + _effect_cells(row)) + " |")
        lines += ["", "aKLD (pairs) is the order-independent form (not in the paper). SNR: "
                      "10·log10(Σx²/Σδ²) of each attacked utterance, averaged.", ""]

    sweep = results["sweep"]
    lines += ["## Audio-level sweep: AUROC, accuracies and SNR under the paper's attack at every level", "",
              f"The same utterances multiplied by each level, then attacked ({attack.describe()}); the benign "
              f"side is the same at every level (peak normalisation). n = {s['n_eval']} adversarial examples at "
              f"the headline level {level}, {s['n_level']} at the others. Median peak: of the scaled originals.", ""]
    rows = []
    for lv in sweep["levels"]:
        for eps_name in head["tables"]:
            for kind in MODEL_ORDER:
                row = sweep["tables"][f"{lv:g}"][eps_name][kind]
                rows.append(([level_label(lv), f"{row['peak_median']:.3f}", eps_name, LABELS[kind]], row))
    lines += _rows_table(aurocs, ("level", "median peak", "ε", "model"), rows)
    meeting = [level_label(lv) for lv in sweep.get("levels_meeting_bar", [])]
    lines += [f"Levels at which every model reaches entropy AUROC ≥ {BAR_AUROC} at ε = {BAR_EPS}: "
              + (", ".join(meeting) or "none") + ".", ""]
    lines += ["![audio-level sweep](fig4_audio_level_sweep.png)", ""]

    conv = results.get("converged_attack")
    if conv:
        spec = AttackSpec(**conv["attack"])
        lines += [f"## AUROC under the converged attack ({spec.describe()}), audio level "
                  f"{level_label(conv['level'])}", "",
                  "Our earlier headline attack: smaller steps from δ = 0, which converge to the target and leave "
                  "the models confidently wrong. Entropy detection fails against it.", ""]
        rows = [([eps_name, LABELS[kind]], conv["tables"][eps_name][kind])
                for eps_name in conv["tables"] for kind in MODEL_ORDER]
        lines += _rows_table(aurocs, ("ε", "model"), rows)

    variants = results.get("ensemble_variants")
    if variants:
        lines += [f"## AUROC of the deep ensemble attacked two ways (the paper's attack, audio level "
                  f"{level_label(variants['level'])})", "",
                  "average: the gradient of the 5-member averaged output (the reference code); member: one seeded "
                  "random member per step.", ""]
        rows = [([eps_name, variant], row) for eps_name, per in variants["tables"].items()
                for variant, row in per.items()]
        lines += _rows_table(aurocs, ("ε", "ensemble attack"), rows)

    lines += [f"## Fig. 1: word accuracy under the paper's attack, audio level {level} (vs original / vs target)", "",
              "| ε | " + " | ".join(LABELS[k] for k in MODEL_ORDER) + " |", "|---" * (len(MODEL_ORDER) + 1) + "|"]
    eps_list = [p["eps"] for p in results["fig1"]["fnn"]]
    for j, eps in enumerate(eps_list):
        row = []
        for kind in MODEL_ORDER:
            p = results["fig1"][kind][j]
            row.append(f"{_fmt(p['accuracy_original'])} / {_fmt(p['accuracy_target'])} (n={p['n']})")
        lines.append(f"| {eps:.2f} | " + " | ".join(row) + " |")
    lines += ["", "Target accuracy averaged over ε ≥ 0.05: " + ", ".join(
        f"{LABELS[k]} {_fmt(results['fig1_summary'][k]['target_accuracy_eps_ge_0.05'])}" for k in MODEL_ORDER) + ". "
        + results["fig1_summary"]["statement"], "", f"Paper: {PAPER['fig1']}.", ""]
    lines += ["## Bars", ""]
    for bar in results["bars"]:
        value = bar["value"]
        if "AUROC" in bar["name"]:
            value = (aurocs.cell(bar["value"], bar.get("auroc_ci"), bar.get("n_adversarial"), bar.get("n_benign"))
                     + f", {bar['value']:.4f} unrounded")
        verdict = "reported, not a bar" if bar["pass"] is None else ("PASS" if bar["pass"] else "FAIL")
        lines.append(f"- {bar['name']}: {value} — {verdict}")
    lines.append("")
    # the banner goes on top but needs every AUROC cell counted first
    return "\n".join(title + aurocs.banner(quick=bool(s["quick"])) + lines)


# ------------------------------------------------------------------------------------ entry point
def _plan(settings: Settings) -> list[tuple]:
    """Every attack stage, most important first: ``(name, eps, attack, level, ensemble, n)``.

    The headline (Tables 2-3), the other levels, the converged attack, the ensemble's other
    variant, then the rest of Fig. 1's ε grid.
    """
    head = settings.headline_level
    other = "member" if settings.ensemble_attack == "average" else "average"

    def ens(name):
        return settings.ensemble_attack if MODELS[name][0] == "ensemble" else None

    plan = [(k, eps, settings.attack, head, ens(k), settings.n_eval) for k in MODEL_ORDER for eps in settings.table_eps]
    plan += [(k, eps, settings.attack, lv, ens(k), min(settings.n_level, settings.n_eval))
             for lv in settings.levels if lv != head for k in MODEL_ORDER for eps in settings.table_eps]
    if settings.converged_attack:
        plan += [(k, eps, settings.converged_attack, head, ens(k), settings.n_eval)
                 for k in MODEL_ORDER for eps in settings.table_eps]
    plan += [("ensemble", eps, settings.attack, head, other, settings.n_eval) for eps in settings.table_eps]
    plan += [(k, eps, settings.attack, head, ens(k), min(settings.n_sweep, settings.n_eval))
             for k in MODEL_ORDER for eps in settings.eps_grid if eps > 0 and eps not in settings.table_eps]
    return plan


def run(out_dir, quick: bool = False, data_root=DEFAULT_DATA_ROOT, seed: int = 0, *,
        progress: bool = True, settings: Settings | None = None, threads: int = 1) -> dict:
    """Run (or resume) the whole reproduction; returns the results dict also written to ``results.json``.

    ``out_dir`` holds ``models/`` (checkpoints), ``stages/`` (cached per-stage JSON),
    ``results.json``, ``tables.md`` and the figures. ``data_root`` is the folder holding
    ``fsdd/`` and ``speech_commands_v0.02_test/``. ``threads`` is handed to
    ``torch.set_num_threads`` (1 by default: the models are tiny, and several threads on a
    shared 2-core machine spend their time waiting for each other).
    """
    torch.set_num_threads(max(1, int(threads)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_root = Path(data_root)
    if not (data_root / "fsdd").is_dir():
        raise DataError(f"{data_root}: no fsdd/ folder; pass --data-root (data_root= in Python) pointing at the shared data folder")
    settings = settings or Settings.make(quick, seed)
    if not set(settings.table_eps) <= set(settings.eps_grid):
        raise ConfigError("table_eps must be part of eps_grid")
    if settings.headline_level not in settings.levels:
        raise ConfigError("headline_level must be one of levels")
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    load_start = [round(x, 2) for x in os.getloadavg()]
    timing: dict = {}
    benign: dict = {}
    attacked: dict = {}
    with _Progress(progress) as bars:
        t0 = time.perf_counter()
        recognizers, model_info = _models(out_dir, settings, data_root, bars)
        timing["models_seconds"] = time.perf_counter() - t0
        fit, evaluation = _test_sets(settings, data_root)
        targets = random_digit_targets(len(evaluation), seed=settings.seed, avoid=evaluation.transcripts)
        t0 = time.perf_counter()
        for name in MODEL_ORDER:
            benign[name] = _benign(out_dir, settings, name, recognizers[name], fit, evaluation, bars)
        timing["benign_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for name, eps, attack, level, ensemble, n in _plan(settings):
            attacked[(name, f"{eps:.2f}", attack.name, level, ensemble)] = _attack(
                out_dir, settings, name, recognizers[name], evaluation, targets, eps, n, bars, attack=attack,
                level=level, ensemble=ensemble)
        timing["attack_seconds"] = time.perf_counter() - t0

    head = settings.headline_level

    def stage(name, eps, attack=settings.attack, level=head, ensemble="default"):
        if ensemble == "default":
            ensemble = settings.ensemble_attack if MODELS[name][0] == "ensemble" else None
        return attacked[(name, f"{eps:.2f}", attack.name, level, ensemble)]

    def table(attack, level):
        return {f"{eps:.2f}": {k: attack_row(benign[k], stage(k, eps, attack, level), k) for k in MODEL_ORDER}
                for eps in settings.table_eps}

    results: dict = {"experiment": NAME, "settings": settings.to_dict(), "data_root": str(data_root),
                     "models": model_info, "paper": PAPER, "auroc_interval": AUROC_INTERVAL}
    results["table1"] = {k: {"accuracy": benign[k]["accuracy"], "n_utterances": settings.n_eval,
                             "n_words": sum(len(t.split()) for t in evaluation.transcripts),
                             "accuracy_fit_set": benign[k]["accuracy_fit_set"],
                             "insertion_penalty": recognizers[k].hmm.insertion_penalty}
                         for k in MODEL_ORDER}
    sweep_tables = {f"{lv:g}": table(settings.attack, lv) for lv in settings.levels}
    results["headline"] = {"level": head, "attack": dataclasses.asdict(settings.attack),
                           "ensemble_attack": settings.ensemble_attack, "tables": sweep_tables[f"{head:g}"]}
    results["detection"] = {f"{eps:.2f}": {k: _detection(benign[k], stage(k, eps), k) for k in MODEL_ORDER}
                            for eps in settings.table_eps}
    results["benign_entropy"] = {k: benign[k]["eval"]["scores"]["entropy"] for k in MODEL_ORDER}
    results["sweep"] = {"attack": dataclasses.asdict(settings.attack), "levels": list(settings.levels),
                        "tables": sweep_tables,
                        "levels_meeting_bar": [lv for lv in settings.levels if BAR_EPS in settings.table_eps and all(
                            row["auroc"]["entropy"] >= BAR_AUROC
                            for row in sweep_tables[f"{lv:g}"][f"{BAR_EPS:.2f}"].values())]}
    if settings.converged_attack:
        results["converged_attack"] = {"attack": dataclasses.asdict(settings.converged_attack), "level": head,
                                       "tables": table(settings.converged_attack, head)}
    results["ensemble_variants"] = {
        "level": head, "attack": dataclasses.asdict(settings.attack),
        "tables": {f"{eps:.2f}": {mode: attack_row(benign["ensemble"], stage("ensemble", eps, ensemble=mode),
                                                   "ensemble") for mode in ("average", "member")}
                   for eps in settings.table_eps}}
    fig1 = {}
    for name in MODEL_ORDER:
        points = [{"eps": 0.0, "n": settings.n_eval, "accuracy_original": benign[name]["accuracy"],
                   "accuracy_target": word_accuracy(targets, benign[name]["eval"]["transcripts"])}]
        for eps in settings.eps_grid:
            if eps == 0:
                continue
            a = stage(name, eps)
            points.append({"eps": eps, "n": a["n"], "accuracy_original": a["accuracy_original"],
                           "accuracy_target": a["accuracy_target"], "target_exact_match": a["target_exact_match"],
                           "snr_db_mean": float(np.mean(a["snr_db"])), "max_abs_delta": max(a["max_abs_delta"])})
        fig1[name] = points
    results["fig1"] = fig1
    results["fig1_summary"] = _fig1_summary(fig1)
    bars_out = [{"name": f"Table 1 accuracy >= 0.95 ({LABELS[k]})", "value": round(results["table1"][k]["accuracy"], 4),
                 "pass": results["table1"][k]["accuracy"] >= 0.95} for k in MODEL_ORDER]
    for eps in sorted(settings.table_eps):
        for k in MODEL_ORDER:
            row = results["headline"]["tables"][f"{eps:.2f}"][k]
            v = row["auroc"]["entropy"]
            bar = abs(eps - BAR_EPS) < 1e-9
            bars_out.append({"name": f"entropy AUROC{f' >= {BAR_AUROC}' if bar else ''} at eps={eps:.2f}, the "
                                     f"paper's attack, audio level {level_label(head)} ({LABELS[k]})",
                             "value": round(v, 4), "pass": (v >= BAR_AUROC) if bar else None,
                             "auroc_ci": row["auroc_ci"]["entropy"], "n_adversarial": row["n_adversarial"],
                             "n_benign": row["n_benign"]})
    timing["total_seconds"] = time.perf_counter() - t_start
    # the compute every stage took when it ran (it may have run in an earlier, interrupted call)
    stage_seconds = [model_info[k].get("train_seconds", 0.0) for k in MODEL_ORDER]
    stage_seconds.append(max(model_info[k].get("data_seconds", 0.0) for k in MODEL_ORDER))
    stage_seconds += [benign[k].get("seconds", 0.0) for k in MODEL_ORDER]
    stage_seconds += [a.get("seconds", 0.0) for a in attacked.values()]
    timing["pipeline_seconds"] = float(sum(stage_seconds))
    timing["cpu_seconds"] = time.process_time() - cpu_start
    timing["load_average_start"] = load_start
    timing["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    timing["cpu_count"] = os.cpu_count()
    results["timing"] = timing
    limit = 5 * 60 if settings.quick else 90 * 60
    pipeline = max(timing["pipeline_seconds"], timing["total_seconds"])
    bars_out.append({"name": f"wall time <= {limit // 60} min (sum of all stages, including ones cached "
                             f"by an earlier call; this call alone: {timing['total_seconds'] / 60:.1f} min)",
                     "value": round(pipeline / 60, 2), "pass": pipeline <= limit})
    results["bars"] = bars_out
    headline_scores = {(k, f"{eps:.2f}"): stage(k, eps)["scores"]["entropy"]
                       for k in MODEL_ORDER for eps in settings.table_eps}
    results["figures"] = _figures(out_dir, results, headline_scores)
    _atomic_json(out_dir / "results.json", results)
    with open(out_dir / "calls.jsonl", "a", encoding="utf-8") as fh:  # one line per call, for the record
        fh.write(json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": settings.quick,
                             "wall_seconds": round(time.perf_counter() - t_start, 1),
                             "cpu_seconds": round(time.process_time() - cpu_start, 1),
                             "load_average_start": load_start}) + "\n")
    atomic_write_text(out_dir / "tables.md", _tables_md(results))
    return results


def _fig1_summary(fig1: dict) -> dict:
    """Whether the uncertainty-aware models reach their target less often than the fNN at ε ≥ 0.05."""
    summary = {k: {"target_accuracy_eps_ge_0.05": float(np.mean([p["accuracy_target"] for p in fig1[k]
                                                                   if p["eps"] >= 0.05 - 1e-9]))}
               for k in fig1}
    others = [k for k in MODEL_ORDER if k != "fnn" and k in fig1]
    lower = [k for k in others
             if summary[k]["target_accuracy_eps_ge_0.05"] < summary["fnn"]["target_accuracy_eps_ge_0.05"]]
    not_lower = [k for k in others if k not in lower]
    summary["lower_than_fnn"] = lower
    fnn = summary["fnn"]["target_accuracy_eps_ge_0.05"]
    rest = float(np.mean([summary[k]["target_accuracy_eps_ge_0.05"] for k in others])) if others else math.nan
    summary["fnn_over_others"] = fnn / rest if rest > 0 else math.nan
    summary["statement"] = (
        "Lower target accuracy than the fNN at ε ≥ 0.05 (the paper's attack): "
        + (", ".join(LABELS[k] for k in lower) or "none")
        + ("; not lower: " + ", ".join(LABELS[k] for k in not_lower) if not_lower else "")
        + f". The fNN's target accuracy is {summary['fnn_over_others']:.2f}× the mean of the others "
          "(the paper: about 1.5×).")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m asrguard.experiments.daubener2020 OUT_DIR [--quick] [--data-root DIR] [--seed N]``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results = run(args.out_dir, quick=args.quick, data_root=args.data_root, seed=args.seed)
    print((Path(args.out_dir) / "tables.md").read_text(encoding="utf-8"))
    return 0 if all(b["pass"] is not False for b in results["bars"]) else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
