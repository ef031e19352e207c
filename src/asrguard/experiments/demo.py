"""One-minute attack-and-detect demo.

``run_demo(out_dir)``:

1. loads the shipped model and detector and the bundled benign example
   (``assets/examples/example.wav``, "nine one one", made with ``asrguard make-example``; with
   ``recognizer="whisper:tiny.en"``, Whisper, its shipped detector and a public-domain LibriVox
   sentence, see ``assets/examples/README.md``);
2. crafts a Carlini & Wagner example from it against the shipped model, toward a short
   command ("delete all files" by default);
3. runs the detector on both and writes ``benign.wav``, ``adversarial.wav``,
   ``uncertainty.png`` (the two ``P^char`` histograms side by side) and ``demo.json``;
4. returns (and with ``verbose=True`` prints) the two verdicts with their evidence.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..asr.base import AudioBatch
from ..asr.registry import load_recognizer
from ..attacks.factory import make_attack
from ..attacks.runner import target_frames
from ..attacks.targets import TargetSampler, required_frames
from ..audio import load_audio, save_audio
from ..defaults import demo_profile, load_detector
from ..errors import ConfigError
from ..evaluate.plots import plot_uncertainty_pair
from ..fileio import atomic_write_text
from ..text import normalize_transcript

DEFAULT_TARGET = "delete all files"  # the CTC profile's: fits the 1.2 s example; longer commands need longer audio


def run_demo(out_dir: str | os.PathLike, *, target: str | None = None, seed: int = 0, detector=None,
             model=None, audio=None, verbose: bool = False, attack_settings: dict | None = None,
             recognizer=None) -> dict:
    """Attack the example, detect both, write WAVs + PNG + JSON into ``out_dir``; return the verdicts.

    Args:
        target: the attacker's command (replaced by a shorter one if it does not fit the audio);
            default: the recogniser's demo profile (``"delete all files"`` for the CTC model, the
            paper's ``"okay google unlock phone and delete files"`` for Whisper).
        detector, model: detector / model folders (default: the shipped ones).
        recognizer: a recogniser spec (``whisper:tiny.en``) instead of ``model``; the detector
            must have been fitted for it.
        audio: a different benign input file (default: the profile's bundled example).
        attack_settings: CW settings to override, e.g. ``{"max_iter": 200}`` (over the profile's).
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    det = load_detector(detector, model, recognizer=load_recognizer(recognizer) if recognizer else None)
    profile = demo_profile(recognizer)
    recognizer = det.recognizer
    source = Path(audio) if audio is not None else profile.audio
    target = profile.target if target is None else target
    attack_settings = {**profile.attack_settings, **(attack_settings or {})}
    benign, _ = load_audio(source, recognizer.sample_rate)
    say = print if verbose else (lambda *a, **k: None)

    original = recognizer.transcribe([benign])[0]
    batch = _batch(benign, recognizer)
    frames = target_frames(recognizer, batch)[0]
    target = normalize_transcript(target)
    if not target:
        raise ConfigError("the demo target is empty after normalisation")
    if (required_frames(target) > 0.6 * frames or target == original
            or not recognizer.target_fits(batch, [target])[0]):
        target = TargetSampler("commands", seed=seed).choose("demo", frames, exclude=original)
        if target is None:
            raise ConfigError(f"{source}: too short for any target ({frames} output frames)")
    say(f"benign input: {source.name} ({len(benign) / recognizer.sample_rate:.1f} s), transcribed as {original!r}")
    say(f"crafting a CW example toward {target!r} ...")

    t0 = time.perf_counter()
    attack = make_attack("cw", recognizer, {"seed": str(seed), **{k: str(v) for k, v in attack_settings.items()}})
    if verbose:
        def show(report):  # every 50 steps: where the optimisation is and what the model hears now
            if report.step % 50 == 0 and report.transcripts:
                heard = next(iter(report.transcripts.values()))
                say(f"  step {report.step:>4}/{report.max_steps}: transcribed as {heard!r}"
                    + (" (target reached; now shrinking the perturbation)" if report.reached else ""))

        attack.on_step = show
    result = attack.generate([benign], [target])[0]
    attack_seconds = time.perf_counter() - t0
    adversarial = result.waveform
    save_audio(out_dir / "benign.wav", benign, recognizer.sample_rate)
    save_audio(out_dir / "adversarial.wav", adversarial, recognizer.sample_rate)
    say(f"  {'success' if result.success else 'FAILED'} in {attack_seconds:.0f} s: transcribed as "
        f"{result.transcript!r}, dB_x(δ) = {result.db_x_delta:.1f} dB")

    t0 = time.perf_counter()
    verdicts = {"benign": det.explain(benign, name="benign.wav"),
                "adversarial": det.explain(adversarial, name="adversarial.wav")}
    detect_seconds = time.perf_counter() - t0
    png = plot_uncertainty_pair(
        (f"benign: {verdicts['benign']['verdict']} (score {verdicts['benign']['score']:+.2f})",
         np.asarray(verdicts["benign"]["histogram"])),
        (f"CW → {target!r}: {verdicts['adversarial']['verdict']} (score {verdicts['adversarial']['score']:+.2f})",
         np.asarray(verdicts["adversarial"]["histogram"])),
        out_dir / "uncertainty.png",
        title=f"P^char over {det.feature_extractor.n} dropout realisations (p={det.feature_extractor.p:g}); "
              f"threshold {det.threshold:+.2f}")
    summary = {
        "source": str(source), "original_transcript": original, "target": target,
        "attack": {"success": bool(result.success), "transcript": result.transcript,
                   "db_x_delta": float(result.db_x_delta), "snr_db": float(result.snr_db),
                   "iterations": int(result.iterations), "seconds": attack_seconds},
        "detector": {"classifier": det.classifier.name, "threshold": det.threshold, "target_fpr": det.target_fpr},
        "verdicts": verdicts, "detect_seconds": detect_seconds,
        "files": {"benign": str(out_dir / "benign.wav"), "adversarial": str(out_dir / "adversarial.wav"),
                  "plot": str(png)},
    }
    summary["total_seconds"] = time.perf_counter() - start
    atomic_write_text(out_dir / "demo.json", json.dumps(summary, indent=2, default=float) + "\n")
    for name in ("benign", "adversarial"):
        v = verdicts[name]
        say(f"{name:>12}: {v['verdict'].upper():<11} score {v['score']:+.3f} (threshold {v['threshold']:+.3f}); "
            f"{len(v['distinct'])} distinct transcripts in {det.feature_extractor.n} realisations, "
            f"most common {v['distinct'][0]['transcript']!r} × {v['distinct'][0]['count']}")
    say(f"wrote {out_dir}/benign.wav, adversarial.wav, uncertainty.png, demo.json "
        f"({summary['total_seconds']:.0f} s in all)")
    return summary


def _batch(waveform, recognizer):
    return AudioBatch.from_waveforms([waveform], recognizer.sample_rate)


__all__ = ["DEFAULT_TARGET", "run_demo"]
