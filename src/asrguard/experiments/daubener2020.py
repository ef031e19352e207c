"""Reproduction of Däubener et al. (2020): uncertainty of hybrid DNN-HMM acoustic models under PGD.

``run(out_dir, quick=False, data_root=..., seed=0)`` does, with a cache under ``out_dir``:

1. trains (or reloads) the four recognisers - fNN, MC dropout, deep ensemble, BNN - on
   connected digits of training speakers (:mod:`asrguard.asr.hybrid.train`) and tunes each
   one's word insertion penalty on a development set of *training* speakers;
2. builds two benign sets of connected digits from held-out speakers (FSDD ``theo`` and the
   Speech Commands test speakers): a *fit* set for the one-class detectors and an *eval* set;
3. Table 1: word accuracy of every model on the eval set;
4. Fig. 1: targeted PGD on the eval set for ``eps = 0.01 .. 0.10``, word accuracy of the
   result with respect to the original and to the target transcription;
5. Tables 2-3: per model and uncertainty measure, a Gaussian fitted to the benign fit-set
   scores, AUROC of benign eval vs adversarial eval examples at ``eps = 0.05`` and ``0.02``;
6. Figs. 2-3: entropy histograms and ROC curves; ``results.json`` (every number; each AUROC
   with its n a side and a bootstrap interval, ``auroc_ci``) and ``tables.md`` (ours beside
   the paper's; AUROCs from fewer than 20 examples a side marked as smoke tests).

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
from ..detect.gaussian import OneClassGaussian
from ..errors import ConfigError, DataError, ModelFileError
from ..evaluate.detection import AUROC_CI_LEVEL, AUROC_CI_RESAMPLES, AUROC_CI_SEED, auroc_interval
from ..evaluate.tables import SMOKE_TEST_BELOW, AurocCells
from ..uncertainty.measures import DETERMINISTIC_MEASURES, MEASURES, utterance_scores

log = logging.getLogger(__name__)

NAME = "daubener2020"
DEFAULT_DATA_ROOT = Path("../shared/data")
LABELS = {"fnn": "fNN", "ensemble": "deep ensemble", "dropout": "MC dropout", "bnn": "BNN"}
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
MODEL_ORDER = ("fnn", "ensemble", "dropout", "bnn")
#: How every ``auroc_ci`` of ``results.json`` was made (next to each: ``n_adversarial`` and ``n_benign``).
AUROC_INTERVAL = {"method": "percentile bootstrap over examples, each side resampled separately",
                  "level": AUROC_CI_LEVEL, "n_resamples": AUROC_CI_RESAMPLES, "seed": AUROC_CI_SEED,
                  "smoke_test_below": SMOKE_TEST_BELOW}


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
    pgd_iterations: int = 30
    pgd_step_fraction: float = 0.1  # step size = fraction * eps
    pgd_single_draw: bool = True  # stochastic models: one fresh draw per PGD step (the paper's attacker)
    attack_batch: int = 16
    #: attack-strength sensitivity at eps = sensitivity_eps: (iterations, step as a fraction of eps), on
    #: the first n_sensitivity eval utterances (the main setting is reported beside them)
    sensitivity: tuple = ((10, 1.0), (10, 0.25), (100, 0.05))
    sensitivity_eps: float = 0.05
    n_sensitivity: int = 50
    #: the attack the paper's public code actually ran, at every table ε on the full eval set:
    #: it left step size and iteration count unset, so cleverhans 2.1's MadryEtAl defaults applied
    #: (``eps_iter`` = 0.01 absolute, ``nb_iter`` = 40, ``rand_init`` = True: a uniform start in
    #: [-ε, ε]). (iterations, absolute step, random start); None skips it.
    reference_attack: tuple | None = (40, 0.01, True)
    draws: dict = field(default_factory=lambda: dict(DEFAULT_DRAWS))
    use_tts: bool = True

    @classmethod
    def make(cls, quick: bool, seed: int = 0) -> "Settings":
        if not quick:
            return cls(quick=False, seed=seed, train=TrainConfig(seed=seed, frontend={"cmn": True}))
        return cls(
            quick=True, seed=seed, n_mixed=300, n_speech_commands=100, n_tts=100, augment_copies=0, n_dev=60,
            train=TrainConfig(seed=seed, epochs_ce=1, epochs_realign=1, frontend={"cmn": True}),
            n_fit=40, n_eval=40, n_sweep=10, pgd_iterations=10, penalty_grid=(0.0, 10.0, 40.0, 80.0),
            sensitivity=((10, 1.0), (30, 0.05)), n_sensitivity=10, reference_attack=(10, 0.01, True),
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

    def attack_key(self, eps: float, iterations: int, step_fraction: float, random_init: bool = False) -> str:
        return (self.key("pgd_single_draw", "attack_batch") + self.eval_key
                + f"{eps:.3f}:{iterations}:{step_fraction:.4f}" + (":random-start" if random_init else ""))


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
    """Train (or reload) the four recognisers; returns ``({kind: recogniser}, {kind: info})``."""
    recognizers, info = {}, {}
    todo = []
    for kind in MODEL_ORDER:
        path = out_dir / "models" / kind
        try:
            rec = HybridRecognizer.load(path)
            extra = json.loads((path / "config.json").read_text())["extra"]
            if extra.get("key") == settings.model_key:
                recognizers[kind], info[kind] = rec, extra
                continue
        except (ModelFileError, KeyError, OSError, json.JSONDecodeError):
            pass
        todo.append(kind)
    if not todo:
        return recognizers, info
    t0 = time.perf_counter()
    train, dev = training_data(settings, data_root, out_dir)
    data_s = time.perf_counter() - t0
    frames = None
    for kind in todo:
        t0 = time.perf_counter()
        bars: dict = {}

        def bar(description, total, member, _bars=bars):
            key = (description, member)
            if key not in _bars:
                _bars[key] = progress.task(f"train {description}", total)
            return _bars[key]

        if frames is None:
            from ..asr.hybrid.acoustic import build_acoustic_model

            probe = HybridRecognizer(build_acoustic_model("fnn"), frontend=settings.train.frontend)
            frames = compute_frames(probe, train, progress=progress.task("features (training set)", len(train)))
        rec = train_recognizer(kind, train, settings.train, progress=bar, frames=frames)
        train_s = time.perf_counter() - t0
        scores = tune_insertion_penalty(rec, dev, settings.penalty_grid)
        extra = {"key": settings.model_key, "kind": kind, "train_seconds": train_s, "data_seconds": data_s,
                 "n_train_utterances": len(train), "n_train_frames": frames.n_frames,
                 "dev_accuracy_by_penalty": {str(k): v for k, v in scores.items()},
                 "insertion_penalty": rec.hmm.insertion_penalty, "train_config": settings.train.to_dict()}
        rec.save(out_dir / "models" / kind, extra=extra)
        recognizers[kind], info[kind] = rec, extra
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


def _benign(out_dir, settings, kind, rec, fit, evaluation, progress) -> dict:
    path = out_dir / "stages" / f"benign_{kind}.json"
    key = settings.eval_key
    cached = _load_stage(path, key)
    if cached is not None:
        return cached
    n = settings.draws[kind]
    t0 = time.perf_counter()
    tick = progress.task(f"benign {LABELS[kind]}", len(fit) + len(evaluation))
    out_fit = evaluate_audio(rec, fit.waveforms, n, settings.seed, tick=tick)
    out_eval = evaluate_audio(rec, evaluation.waveforms, n, settings.seed, tick=tick)
    data = {"key": key, "kind": kind, "n_draws": n, "fit": out_fit, "eval": out_eval,
            "accuracy": word_accuracy(evaluation.transcripts, out_eval["transcripts"]),
            "accuracy_fit_set": word_accuracy(fit.transcripts, out_fit["transcripts"]),
            "seconds": time.perf_counter() - t0}
    _atomic_json(path, data)
    return data


def craft_pgd(rec: HybridRecognizer, waveforms: Sequence, targets: Sequence[str], eps: float, settings: Settings, *,
              iterations: int | None = None, step_fraction: float | None = None, random_init: bool = False,
              tick: Callable[[int], None] | None = None) -> tuple[list[np.ndarray], list[float]]:
    """The reproduction's PGD (its batches and seeds) on ``waveforms``: adversarial audio and max |δ| per item.

    ``iterations`` and ``step_fraction`` (step = fraction · ε) default to the main setting.
    """
    iterations = settings.pgd_iterations if iterations is None else int(iterations)
    step_fraction = settings.pgd_step_fraction if step_fraction is None else float(step_fraction)
    stochastic = settings.pgd_single_draw and rec.kind != "fnn"
    adversarial: list = [None] * len(waveforms)
    max_delta = [0.0] * len(waveforms)
    for b, index in enumerate(_batches(len(waveforms), settings.attack_batch, [len(w) for w in waveforms])):
        batch = AudioBatch.from_waveforms([waveforms[i] for i in index], rec.sample_rate)
        attack = PGD(rec, eps=eps, step_size=step_fraction * eps, iterations=iterations, stochastic=stochastic,
                     random_init=random_init, seed=settings.seed * 100_000 + b)
        progress = (lambda k, size=len(index): tick(k * size)) if tick else None
        result = attack.run(batch, [targets[i] for i in index], progress=progress)
        for k, i in enumerate(index):
            adversarial[i] = result.adversarial.unbatch()[k]
            max_delta[i] = result.max_abs_delta()[k]
    return adversarial, max_delta


def _attack(out_dir, settings, kind, rec, evaluation, targets, eps, n, progress, *, iterations=None,
            step_fraction=None, random_init: bool = False) -> dict:
    iterations = settings.pgd_iterations if iterations is None else int(iterations)
    step_fraction = settings.pgd_step_fraction if step_fraction is None else float(step_fraction)
    main = iterations == settings.pgd_iterations and step_fraction == settings.pgd_step_fraction and not random_init
    suffix = "" if main else f"_it{iterations}_step{step_fraction:g}" + ("_random_start" if random_init else "")
    path = out_dir / "stages" / f"attack_{kind}_eps{eps:.2f}{suffix}.json"
    key = settings.attack_key(eps, iterations, step_fraction, random_init)
    cached = _load_stage(path, key)
    if cached is not None and cached.get("n") == n:
        return cached
    t0 = time.perf_counter()
    step = step_fraction * eps
    stochastic = settings.pgd_single_draw and kind != "fnn"
    tick = progress.task(f"PGD {LABELS[kind]} eps={eps:.2f} it={iterations} step={step:.4f}", n * iterations)
    adversarial, max_delta = craft_pgd(rec, evaluation.waveforms[:n], targets, eps, settings, iterations=iterations,
                                       step_fraction=step_fraction, random_init=random_init, tick=tick)
    evaluated = evaluate_audio(rec, adversarial, settings.draws[kind], settings.seed)
    originals = evaluation.transcripts[:n]
    data = {"key": key, "kind": kind, "eps": eps, "n": n, "step_size": step, "iterations": iterations,
            "random_start": random_init,
            "single_draw_gradient": stochastic, "targets": list(targets[:n]), "max_abs_delta": max_delta,
            "transcripts": evaluated["transcripts"], "scores": evaluated["scores"],
            "accuracy_original": word_accuracy(originals, evaluated["transcripts"]),
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


def _finite_or_none(values) -> list:
    """``results.json`` is written without NaN: an undefined bound becomes ``None``."""
    return [float(v) if math.isfinite(v) else None for v in values]


# ------------------------------------------------------------------------------------ reporting
def _figures(out_dir: Path, results: dict, stages: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..evaluate.plots import distinct_styles

    written = []
    sweep = results["fig1"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for kind in MODEL_ORDER:
        eps = [p["eps"] for p in sweep[kind]]
        axes[0].plot(eps, [p["accuracy_original"] for p in sweep[kind]], marker="o", label=LABELS[kind])
        axes[1].plot(eps, [p["accuracy_target"] for p in sweep[kind]], marker="o", label=LABELS[kind])
    for ax, title in zip(axes, ("w.r.t. original transcription", "w.r.t. target transcription")):
        ax.set_title(f"Word accuracy {title}")
        ax.set_xlabel("ε (L∞, float scale)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("word accuracy")
    axes[1].legend()
    fig.tight_layout()
    written.append(_save(fig, out_dir / "fig1_accuracy_vs_eps.png"))

    for eps_name in results["detection"]:
        eps = float(eps_name)
        fig, axes = plt.subplots(1, len(MODEL_ORDER), figsize=(4 * len(MODEL_ORDER), 3.4))
        for ax, kind in zip(axes, MODEL_ORDER):
            benign = stages["benign"][kind]["eval"]["scores"]["entropy"]
            adv = stages["attack"][(kind, eps)]["scores"]["entropy"]
            bins = np.linspace(min(min(benign), min(adv)), max(max(benign), max(adv)), 40)
            ax.hist(benign, bins=bins, alpha=0.6, label="benign")
            ax.hist(adv, bins=bins, alpha=0.6, label="adversarial")
            ax.set_title(f"{LABELS[kind]}, ε={eps:.2f}")
            ax.set_xlabel("max-over-frames entropy (nats)")
        axes[0].set_ylabel("utterances")
        axes[0].legend()
        fig.tight_layout()
        written.append(_save(fig, out_dir / f"fig2_entropy_histograms_eps{eps:.2f}.png"))

        fig, axes = plt.subplots(1, len(MODEL_ORDER), figsize=(4 * len(MODEL_ORDER), 3.6))
        for ax, kind in zip(axes, MODEL_ORDER):
            per_measure = results["detection"][eps_name][kind]
            # measures often give the same curve (all near the top-left corner): the styles keep them apart
            for (m, cell), style in zip(per_measure.items(), distinct_styles(len(per_measure))):
                ax.plot(cell["roc"]["fpr"], cell["roc"]["tpr"], label=f"{MEASURE_LABELS[m]} ({cell['auroc']:.3f})",
                        **style)
            ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
            entropy = per_measure["entropy"]
            ax.set_title(f"{LABELS[kind]}, ε={eps:.2f} (n={entropy['n_adversarial']}/{entropy['n_benign']})")
            ax.set_xlabel("false positive rate")
            ax.legend(fontsize=7, loc="lower right")
        axes[0].set_ylabel("true positive rate")
        fig.tight_layout()
        written.append(_save(fig, out_dir / f"fig3_roc_eps{eps:.2f}.png"))
    return written


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        plt.close(fig)
    return path.name


def _fmt(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _tables_md(results: dict) -> str:
    s = results["settings"]
    title = [f"# Däubener et al. (2020) reproduction{' (quick)' if s['quick'] else ''}", ""]
    aurocs = AurocCells()
    lines = [f"Data: connected digits (1-5) from FSDD + Speech Commands digit words (+ TTS voices in training); "
              f"held-out speakers: FSDD `theo` and the Speech Commands test speakers. Paper: TIDIGITS. "
              f"Benign fit set {s['n_fit']}, benign eval set {s['n_eval']} utterances; "
              f"PGD {s['pgd_iterations']} iterations, step {s['pgd_step_fraction']}·ε, L∞ on the [-1, 1] scale. "
              f"Stages took {results['timing']['pipeline_seconds'] / 60:.1f} min in all; this call "
              f"{results['timing']['total_seconds'] / 60:.1f} min wall, "
              f"{results['timing']['cpu_seconds'] / 60:.1f} min CPU "
              f"(load average at start {results['timing']['load_average_start']}, "
              f"at end {results['timing']['load_average_end']}).", ""]
    lines += ["## Table 1: word accuracy on benign held-out utterances", "",
              "| | " + " | ".join(LABELS[k] for k in MODEL_ORDER) + " |", "|---" * (len(MODEL_ORDER) + 1) + "|"]
    lines.append("| ours | " + " | ".join(_fmt(results["table1"][k]["accuracy"]) for k in MODEL_ORDER) + " |")
    lines.append("| paper | " + " | ".join(_fmt(PAPER["table1"][k]) for k in MODEL_ORDER) + " |")
    lines.append("")
    for number, eps in (("2", 0.05), ("3", 0.02)):
        name = f"{eps:.2f}"
        if name not in results["detection"]:
            continue
        table = f"table{number}"
        lines += [f"## Table {number}: AUROC at ε = {eps} (ours / paper)", "",
                  "| | " + " | ".join(MEASURE_LABELS[m] for m in TABLE_MEASURES) + " |",
                  "|---" * (len(TABLE_MEASURES) + 1) + "|"]
        for kind in MODEL_ORDER:
            cells = []
            for m in TABLE_MEASURES:
                ours = aurocs.format(results["detection"][name][kind].get(m))
                paper = PAPER[table][kind].get(m)
                cells.append(f"{ours} / {_fmt(paper)}" if m != "akld_pairs" else ours)
            lines.append(f"| {LABELS[kind]} | " + " | ".join(cells) + " |")
        n_adv = results["detection"][name]["fnn"]["entropy"]["n_adversarial"]
        n_ben = results["detection"][name]["fnn"]["entropy"]["n_benign"]
        lines += ["", f"{n_ben} benign vs {n_adv} adversarial; aKLD (pairs) is the order-independent form "
                      "(not in the paper).", ""]
    lines += ["## Fig. 1: word accuracy under PGD (vs original / vs target)", "",
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
    sens = results.get("attack_sensitivity")
    if sens:
        lines += [f"## Attack strength vs detectability (ε = {sens['eps']})", "",
                  "PGD settings beside the main one (marked *): target word accuracy and entropy AUROC.", "",
                  "| model | iterations | step | n adv | acc. vs original | acc. vs target | entropy AUROC | "
                  "mean max-entropy benign / adversarial |", "|---" * 8 + "|"]
        for kind in MODEL_ORDER:
            for row in sens["rows"][kind]:
                entropy_auroc = aurocs.cell(row["auroc"]["entropy"], row.get("auroc_ci", {}).get("entropy"),
                                            row["n_adversarial"], row["n_benign"])
                lines.append(
                    f"| {LABELS[kind]} | {row['iterations']}{'*' if row['main'] else ''} | "
                    f"{row['step_fraction']:g}·ε | {row['n_adversarial']} | {_fmt(row['accuracy_original'])} | "
                    f"{_fmt(row['accuracy_target'])} | {entropy_auroc} | "
                    f"{row['benign_entropy_mean']:.2f} / {row['adversarial_entropy_mean']:.2f} |")
        lines.append("")
    ref = results.get("reference_attack")
    if ref:
        lines += ["## Tables 2-3 again (AUROC), with the attack the paper's code ran", "",
                  "The public code left PGD's step and iteration count to the defaults of cleverhans 2.1's "
                  "MadryEtAl: 40 iterations of step 0.01 (absolute) from a uniform random start in [-ε, ε]. "
                  f"This run: {ref['iterations']} iterations of step {ref['step_size']:g}"
                  f"{' from a random start' if ref['random_start'] else ''}. Same benign sets and targets as "
                  "above; AUROC per measure, then word accuracy of the attacked audio against the original "
                  "and the target.", "",
                  "| ε | model | " + " | ".join(MEASURE_LABELS[m] for m in TABLE_MEASURES)
                  + " | acc. vs original | acc. vs target |", "|---" * (len(TABLE_MEASURES) + 4) + "|"]
        for eps_name, per_kind in ref["tables"].items():
            for kind in MODEL_ORDER:
                row = per_kind[kind]
                cells = [aurocs.cell(row["auroc"].get(m), row.get("auroc_ci", {}).get(m), row["n_adversarial"],
                                     row["n_benign"]) for m in TABLE_MEASURES]
                lines.append(f"| {eps_name} | {LABELS[kind]} | " + " | ".join(cells)
                             + f" | {_fmt(row['accuracy_original'])} | {_fmt(row['accuracy_target'])} |")
        lines.append("")
    lines += ["## Bars", ""]
    for bar in results["bars"]:
        value = bar["value"]
        if "AUROC" in bar["name"]:
            value = aurocs.cell(bar["value"], bar.get("auroc_ci"), bar.get("n_adversarial"), bar.get("n_benign"))
        lines.append(f"- {bar['name']}: {value} — {'PASS' if bar['pass'] else 'FAIL'}")
    lines.append("")
    # the banner goes on top but needs every AUROC cell counted first
    return "\n".join(title + aurocs.banner(quick=bool(s["quick"])) + lines)


# ------------------------------------------------------------------------------------ entry point
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
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    load_start = [round(x, 2) for x in os.getloadavg()]
    timing: dict = {}
    stages: dict = {"benign": {}, "attack": {}}
    with _Progress(progress) as bars:
        t0 = time.perf_counter()
        recognizers, model_info = _models(out_dir, settings, data_root, bars)
        timing["models_seconds"] = time.perf_counter() - t0
        fit, evaluation = _test_sets(settings, data_root)
        targets = random_digit_targets(len(evaluation), seed=settings.seed, avoid=evaluation.transcripts)
        t0 = time.perf_counter()
        for kind in MODEL_ORDER:
            stages["benign"][kind] = _benign(out_dir, settings, kind, recognizers[kind], fit, evaluation, bars)
        timing["benign_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for kind in MODEL_ORDER:
            for eps in settings.eps_grid:
                if eps == 0:
                    continue
                n = settings.n_eval if eps in settings.table_eps else min(settings.n_sweep, settings.n_eval)
                stages["attack"][(kind, eps)] = _attack(out_dir, settings, kind, recognizers[kind], evaluation,
                                                        targets, eps, n, bars)
        timing["attack_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_sens = min(settings.n_sensitivity, settings.n_eval)
        for kind in MODEL_ORDER:
            for iterations, fraction in settings.sensitivity:
                stages["attack"][(kind, settings.sensitivity_eps, iterations, fraction)] = _attack(
                    out_dir, settings, kind, recognizers[kind], evaluation, targets, settings.sensitivity_eps,
                    n_sens, bars, iterations=iterations, step_fraction=fraction)
        timing["sensitivity_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if settings.reference_attack:
            ref_iterations, ref_step, ref_random = settings.reference_attack
            for kind in MODEL_ORDER:
                for eps in settings.table_eps:
                    stages["attack"][(kind, eps, "reference")] = _attack(
                        out_dir, settings, kind, recognizers[kind], evaluation, targets, eps, settings.n_eval,
                        bars, iterations=ref_iterations, step_fraction=ref_step / eps, random_init=ref_random)
        timing["reference_attack_seconds"] = time.perf_counter() - t0

    results: dict = {"experiment": NAME, "settings": settings.to_dict(), "data_root": str(data_root),
                     "models": model_info, "paper": PAPER, "auroc_interval": AUROC_INTERVAL}
    results["table1"] = {k: {"accuracy": stages["benign"][k]["accuracy"], "n_utterances": settings.n_eval,
                             "n_words": sum(len(t.split()) for t in evaluation.transcripts),
                             "accuracy_fit_set": stages["benign"][k]["accuracy_fit_set"],
                             "insertion_penalty": recognizers[k].hmm.insertion_penalty}
                         for k in MODEL_ORDER}
    fig1 = {}
    for kind in MODEL_ORDER:
        points = [{"eps": 0.0, "n": settings.n_eval, "accuracy_original": stages["benign"][kind]["accuracy"],
                   "accuracy_target": word_accuracy(targets, stages["benign"][kind]["eval"]["transcripts"])}]
        for eps in settings.eps_grid:
            if eps == 0:
                continue
            a = stages["attack"][(kind, eps)]
            points.append({"eps": eps, "n": a["n"], "accuracy_original": a["accuracy_original"],
                           "accuracy_target": a["accuracy_target"], "target_exact_match": a["target_exact_match"],
                           "max_abs_delta": max(a["max_abs_delta"])})
        fig1[kind] = points
    results["fig1"] = fig1
    summary = {k: {"target_accuracy_eps_ge_0.05": float(np.mean([p["accuracy_target"] for p in fig1[k]
                                                                   if p["eps"] >= 0.05 - 1e-9]))}
               for k in MODEL_ORDER}
    lower = [k for k in ("dropout", "ensemble", "bnn")
             if summary[k]["target_accuracy_eps_ge_0.05"] < summary["fnn"]["target_accuracy_eps_ge_0.05"]]
    summary["lower_than_fnn"] = lower
    not_lower = [k for k in ("dropout", "ensemble", "bnn") if k not in lower]
    summary["statement"] = (
        "Lower target accuracy than the fNN at ε ≥ 0.05: "
        + (", ".join(LABELS[k] for k in lower) or "none")
        + ("; not lower: " + ", ".join(LABELS[k] for k in not_lower) if not_lower else "") + ".")
    results["fig1_summary"] = summary
    detection = {}
    for eps in settings.table_eps:
        detection[f"{eps:.2f}"] = {k: _detection(stages["benign"][k], stages["attack"][(k, eps)], k)
                                   for k in MODEL_ORDER}
    results["detection"] = detection
    sensitivity = {}
    eps_s = settings.sensitivity_eps
    for kind in MODEL_ORDER:
        rows = []
        configs = [(settings.pgd_iterations, settings.pgd_step_fraction), *settings.sensitivity]
        for iterations, fraction in configs:
            if (iterations, fraction) == (settings.pgd_iterations, settings.pgd_step_fraction):
                a = stages["attack"].get((kind, eps_s))
                if a is None:
                    continue
                n_ben = None
            else:
                a = stages["attack"][(kind, eps_s, iterations, fraction)]
                n_ben = a["n"]
            det = _detection(stages["benign"][kind], a, kind, n_benign=n_ben)
            rows.append({"iterations": iterations, "step_fraction": fraction, "step_size": a["step_size"],
                         "main": (iterations, fraction) == configs[0], "n_adversarial": a["n"],
                         "n_benign": det["entropy"]["n_benign"],
                         "accuracy_original": a["accuracy_original"], "accuracy_target": a["accuracy_target"],
                         "auroc": {m: v["auroc"] for m, v in det.items()},
                         "auroc_ci": {m: v["auroc_ci"] for m, v in det.items()},
                         "adversarial_entropy_mean": det["entropy"]["adversarial_mean"],
                         "benign_entropy_mean": det["entropy"]["benign_mean"]})
        sensitivity[kind] = rows
    results["attack_sensitivity"] = {"eps": eps_s, "rows": sensitivity}
    if settings.reference_attack:
        reference = {}
        for eps in settings.table_eps:
            per_kind = {}
            for kind in MODEL_ORDER:
                a = stages["attack"][(kind, eps, "reference")]
                det = _detection(stages["benign"][kind], a, kind)
                per_kind[kind] = {"accuracy_original": a["accuracy_original"], "accuracy_target": a["accuracy_target"],
                                  "n_adversarial": a["n"], "n_benign": det["entropy"]["n_benign"],
                                  "auroc": {m: v["auroc"] for m, v in det.items()},
                                  "auroc_ci": {m: v["auroc_ci"] for m, v in det.items()}}
            reference[f"{eps:.2f}"] = per_kind
        iterations, step, random_start = settings.reference_attack
        results["reference_attack"] = {"iterations": iterations, "step_size": step, "random_start": random_start,
                                       "tables": reference}
    bars_out = [{"name": f"Table 1 accuracy >= 0.95 ({LABELS[k]})", "value": round(results["table1"][k]["accuracy"], 4),
                 "pass": results["table1"][k]["accuracy"] >= 0.95} for k in MODEL_ORDER]
    for eps_name, cells in detection.items():
        for k in MODEL_ORDER:
            entropy = cells[k]["entropy"]
            v = entropy["auroc"]
            bars_out.append({"name": f"entropy AUROC >= 0.98 at eps={eps_name} ({LABELS[k]})", "value": round(v, 4),
                             "pass": v >= 0.98, "auroc_ci": entropy["auroc_ci"],
                             "n_adversarial": entropy["n_adversarial"], "n_benign": entropy["n_benign"]})
    timing["total_seconds"] = time.perf_counter() - t_start
    # the compute every stage took when it ran (it may have run in an earlier, interrupted call)
    stage_seconds = [model_info[k].get("train_seconds", 0.0) for k in MODEL_ORDER]
    stage_seconds.append(max(model_info[k].get("data_seconds", 0.0) for k in MODEL_ORDER))
    stage_seconds += [stages["benign"][k].get("seconds", 0.0) for k in MODEL_ORDER]
    stage_seconds += [a.get("seconds", 0.0) for a in stages["attack"].values()]
    timing["pipeline_seconds"] = float(sum(stage_seconds))
    timing["cpu_seconds"] = time.process_time() - cpu_start
    timing["load_average_start"] = load_start
    timing["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    timing["cpu_count"] = os.cpu_count()
    results["timing"] = timing
    limit = 5 * 60 if settings.quick else 60 * 60
    pipeline = max(timing["pipeline_seconds"], timing["total_seconds"])
    bars_out.append({"name": f"wall time <= {limit // 60} min (sum of all stages, including ones cached "
                             f"by an earlier call; this call alone: {timing['total_seconds'] / 60:.1f} min)",
                     "value": round(pipeline / 60, 2), "pass": pipeline <= limit})
    results["bars"] = bars_out
    results["figures"] = _figures(out_dir, results, stages)
    _atomic_json(out_dir / "results.json", results)
    with open(out_dir / "calls.jsonl", "a", encoding="utf-8") as fh:  # one line per call, for the record
        fh.write(json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": settings.quick,
                             "wall_seconds": round(time.perf_counter() - t_start, 1),
                             "cpu_seconds": round(time.process_time() - cpu_start, 1),
                             "load_average_start": load_start}) + "\n")
    tables = _tables_md(results)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".tables.", suffix=".md")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(tables)
    os.replace(tmp, out_dir / "tables.md")
    return results


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
    return 0 if all(b["pass"] for b in results["bars"]) else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
