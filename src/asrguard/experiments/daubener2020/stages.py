"""The Däubener et al. (2020) reproduction's stages, each cached and skipped when done.

Models (:func:`model_stage`, checkpoints under ``models/``), the benign sets
(:func:`benign_stage`) and every PGD setting of :func:`attack_plan` (:func:`attack_stage`)
write their outputs atomically; a stage whose output exists with the same settings key is
read back instead of run again.

Example:
    >>> [step[:2] for step in attack_plan(Settings.make(True))][:2]
    [('fnn', 0.05), ('fnn', 0.02)]
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ...asr.base import AudioBatch
from ...asr.hybrid.acoustic import build_acoustic_model
from ...asr.hybrid.digits import build_dev_set, build_training_set, connected_digits, digit_records
from ...asr.hybrid.recognizer import HybridRecognizer
from ...asr.hybrid.train import compute_frames, train_recognizer, tune_insertion_penalty, word_accuracy
from ...attacks.pgd import PGDAttack, PGDConfig
from ...audio import snr_db
from ...data.records import Utterance
from ...errors import ConfigError, DataError, ModelFileError
from ..common import ProgressBars, write_json
from .config import LABELS, MODEL_ORDER, MODELS, AttackSpec, Settings
from .scoring import evaluate_audio, length_sorted_batches


def write_stage(path: Path, data: dict) -> None:
    """Write a stage's output (or ``results.json``) as this experiment always has: NaN allowed, no final newline.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "benign_fnn.json"
        >>> write_stage(path, {"key": "k", "score": float("nan")})
        >>> print(path.read_text())
        {
         "key": "k",
         "score": NaN
        }
    """
    write_json(path, data, allow_nan=True, end="")


def load_stage(path: Path, key: str) -> dict | None:
    """A stage's cached output, or ``None`` when it is missing, unreadable or made with other settings.

    Example:
        >>> load_stage(Path("nowhere.json"), "key") is None
        True
    """
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if data.get("key") == key else None


def training_data(settings: Settings, data_root: Path, out_dir: Path):
    """The training and development utterances of a run in ``out_dir`` (TTS cached under ``out_dir/cache``).

    Example:
        >>> train, dev = training_data(Settings.make(True), Path("../shared/data"), Path("runs/d"))  # doctest: +SKIP
    """
    tts_dir = Path(out_dir) / "cache" / "tts" if settings.use_tts else None
    train = build_training_set(data_root, n_mixed=settings.n_mixed, n_speech_commands=settings.n_speech_commands,
                               n_tts=settings.n_tts, augment_copies=settings.augment_copies, seed=settings.seed,
                               tts_dir=tts_dir)
    return train, build_dev_set(data_root, settings.n_dev, seed=settings.seed, tts_dir=tts_dir)


def model_stage(out_dir: Path, settings: Settings, data_root: Path, progress: ProgressBars) -> tuple[dict, dict]:
    """Train (or reload) the recognisers of :data:`MODELS`; returns ``({name: recogniser}, {name: info})``.

    Example:
        >>> with ProgressBars(False) as bars:  # doctest: +SKIP
        ...     recognizers, info = model_stage(Path("runs/d"), Settings.make(True), Path("../shared/data"), bars)
    """
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


def held_out_sets(settings: Settings, data_root: Path) -> tuple[list[Utterance], list[Utterance]]:
    """The benign *fit* set (for the one-class detectors) and *eval* set: connected digits of held-out speakers.

    Example:
        >>> fit, evaluation = held_out_sets(Settings.make(True), Path("../shared/data"))  # doctest: +SKIP
        >>> len(fit), len(evaluation)  # doctest: +SKIP
        (40, 40)
    """
    records = [r for r in digit_records(data_root) if r.split == "test"]
    if not records:
        raise DataError(f"{data_root}: no held-out (test-speaker) digit recordings found")
    everything = connected_digits(records, settings.n_fit + settings.n_eval, seed=settings.seed * 10 + 1000,
                                  split="test")
    fit = everything[:settings.n_fit]
    evaluation = everything[settings.n_fit:settings.n_fit + settings.n_eval]
    return fit, evaluation


def benign_stage(out_dir, settings, name, rec, fit, evaluation, progress) -> dict:
    """Transcripts, scores and word accuracy of one model on the benign fit and eval sets (cached).

    Example:
        >>> benign = benign_stage(out_dir, settings, "fnn", rec, fit, evaluation, bars)  # doctest: +SKIP
        >>> benign["accuracy"]  # doctest: +SKIP
        0.97
    """
    path = out_dir / "stages" / f"benign_{name}.json"
    key = settings.eval_key
    cached = load_stage(path, key)
    if cached is not None:
        return cached
    n = settings.draws[name]
    t0 = time.perf_counter()
    tick = progress.task(f"benign {LABELS[name]}", len(fit) + len(evaluation))
    out_fit = evaluate_audio(rec, [u.waveform for u in fit], n, settings.seed, tick=tick)
    out_eval = evaluate_audio(rec, [u.waveform for u in evaluation], n, settings.seed, tick=tick)
    data = {"key": key, "kind": rec.kind, "n_draws": n, "fit": out_fit, "eval": out_eval,
            "accuracy": word_accuracy([u.transcript for u in evaluation], out_eval["transcripts"]),
            "accuracy_fit_set": word_accuracy([u.transcript for u in fit], out_fit["transcripts"]),
            "seconds": time.perf_counter() - t0}
    write_stage(path, data)
    return data


def scaled(waveforms: Sequence, level: float) -> list[np.ndarray]:
    """Every waveform multiplied by ``level`` (float32): the audio-level sweep's inputs.

    Example:
        >>> scaled([np.ones(2)], 0.25)[0].tolist()
        [0.25, 0.25]
    """
    return [(np.asarray(w, dtype=np.float32) * np.float32(level)).astype(np.float32) for w in waveforms]


def craft_pgd(rec: HybridRecognizer, waveforms: Sequence, targets: Sequence[str], eps: float, settings: Settings, *,
              attack: AttackSpec | None = None, ensemble: str | None = None,
              tick: Callable[[int], None] | None = None) -> tuple[list[np.ndarray], list[float]]:
    """The reproduction's PGD (its batches and seeds) on ``waveforms``: adversarial audio and max |δ| per item.

    ``attack`` defaults to the headline attack (``settings.attack``). MC dropout and BNN
    gradients come from one fresh draw per step (``settings.pgd_single_draw``); the ensemble's
    from its averaged output (``ensemble="average"``) or one random member per step
    (``"member"``); ``ensemble`` defaults to ``settings.ensemble_attack``.

    Example:
        >>> adversarial, max_delta = craft_pgd(rec, waveforms, ["one two"] * len(waveforms), 0.02,
        ...                                    Settings.make(True))  # doctest: +SKIP
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
    for b, index in enumerate(length_sorted_batches(len(waveforms), settings.attack_batch,
                                                    [len(w) for w in waveforms])):
        batch = AudioBatch.from_waveforms([waveforms[i] for i in index], rec.sample_rate)
        config = PGDConfig(eps=eps, step_size=attack.step_size(eps), iterations=attack.iterations,
                           stochastic=stochastic, random_init=attack.random_start, seed=settings.seed * 100_000 + b)
        pgd = PGDAttack(rec, config)
        if tick:
            pgd.on_step = lambda report, size=len(index): tick(size)
        # the audio is all the reproduction needs: perturb skips generate's three decodes per utterance
        waves, extras = pgd.perturb(batch, [targets[i] for i in index])
        for k, i in enumerate(index):
            adversarial[i] = waves[k]
            max_delta[i] = extras[k]["max_abs_delta"]
    return adversarial, max_delta


def attack_stage(out_dir, settings, name, rec, evaluation, targets, eps, n, progress, *, attack: AttackSpec,
                 level: float, ensemble: str | None = None) -> dict:
    """PGD on the first ``n`` eval utterances at audio ``level``; transcripts, scores, accuracies, SNR (cached).

    Example:
        >>> a = attack_stage(out_dir, settings, "fnn", rec, evaluation, targets, 0.02, 40, bars,
        ...                  attack=PAPER_ATTACK, level=0.25)  # doctest: +SKIP
        >>> a["accuracy_target"]  # doctest: +SKIP
        0.6
    """
    ensemble = (ensemble or settings.ensemble_attack) if rec.kind == "ensemble" else None
    suffix = f"_{attack.name}_level{level:g}" + (f"_{ensemble}" if ensemble else "")
    path = out_dir / "stages" / f"attack_{name}_eps{eps:.2f}{suffix}.json"
    key = settings.attack_key(eps, attack, level, ensemble)
    cached = load_stage(path, key)
    if cached is not None and cached.get("n") == n:
        return cached
    t0 = time.perf_counter()
    step = attack.step_size(eps)
    tick = progress.task(f"PGD {LABELS[name]} eps={eps:.2f} level={level:g} {attack.name}"
                         + (f" ({ensemble})" if ensemble else ""), n * attack.iterations)
    originals = scaled([u.waveform for u in evaluation[:n]], level)
    adversarial, max_delta = craft_pgd(rec, originals, targets, eps, settings, attack=attack,
                                       ensemble=ensemble or "average", tick=tick)
    evaluated = evaluate_audio(rec, adversarial, settings.draws[name], settings.seed)
    references = [u.transcript for u in evaluation[:n]]
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
    write_stage(path, data)
    return data


def attack_plan(settings: Settings) -> list[tuple]:
    """Every attack stage, most important first: ``(name, eps, attack, level, ensemble, n)``.

    The headline (Tables 2-3), the other levels, the converged attack, the ensemble's other
    variant, then the rest of Fig. 1's ε grid.

    Example:
        >>> attack_plan(Settings.make(True))[0][:2]
        ('fnn', 0.05)
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


__all__ = ["attack_plan", "attack_stage", "benign_stage", "craft_pgd", "held_out_sets", "load_stage", "model_stage",
           "scaled", "training_data", "write_stage"]
