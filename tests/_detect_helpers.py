"""Small random recognisers, tiny audio and a tiny fitted detector shared by the detection tests."""

from __future__ import annotations

import numpy as np
import torch

from asrguard.asr.ctc import CTCConfig, CTCRecognizer
from asrguard.detect.classifiers import make_classifier
from asrguard.detect.detector import Detector
from asrguard.uncertainty.features import FeatureExtractor


def tiny_recognizer(tmp_path, seed: int = 0) -> CTCRecognizer:
    """A random-init CTC model saved and reloaded, so that it carries a real checksum."""
    torch.manual_seed(seed)
    model = CTCRecognizer(CTCConfig(dense_size=32, lstm_size=16))
    folder = tmp_path / f"model{seed}"
    model.save(folder)
    return CTCRecognizer.load(folder)


def clips(n: int, seed: int, *, noisy: bool = False, seconds: float = 0.4) -> list[np.ndarray]:
    """Tones (``noisy=False``) or tones buried in loud noise: two groups a detector can separate."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    out = []
    for _ in range(n):
        x = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 600) * t)
        if noisy:
            x = 0.1 * x + 0.5 * rng.uniform(-1, 1, size=t.size)
        out.append(np.clip(x, -1, 1).astype(np.float32))
    return out


class TranscribeOnly:
    """A recogniser with only the transcribe capability (as an ART estimator adapter has): no
    batched realisations, no dropout, one input at a time through ``inner``."""

    def __init__(self, inner):
        self.inner, self.sample_rate = inner, inner.sample_rate

    def transcribe(self, batch):
        return self.inner.transcribe(batch)

    def fingerprint(self):
        return self.inner.fingerprint()

    def normalize_text(self, text):
        return text


def fitted_detector(recognizer, classifier: str = "char-svm4") -> Detector:
    det = Detector(recognizer, FeatureExtractor(n=8, p=0.3, seed=0), make_classifier(classifier), target_fpr=0.1)
    return det.fit(clips(6, 0), clips(6, 1, noisy=True))


def finished_attack_folders(attacks_dir, recognizer, settings, items, names=("cw", "dr")) -> None:
    """Attack folders a reproduction reuses without optimising: every item "succeeds" as a noisy copy.

    Only the pipeline is under test where these stand in: the copies are separable by their noise.
    """
    import json

    from asrguard.attacks.factory import make_attack
    from asrguard.attacks.manifest import write_run_file
    from asrguard.audio import save_audio
    from asrguard.experiments.jayashankar2020 import attack_folder

    rng = np.random.default_rng(0)
    for name in names:
        attack = make_attack(name, recognizer, {"seed": "0"})
        folder = attack_folder(attacks_dir, name, attack.config_hash, settings)
        (folder / "audio").mkdir(parents=True)
        write_run_file(folder, attack, None)  # the attack's settings, as a real run keeps them
        rows = []
        for item in items:
            audio = f"audio/{item.id.replace(':', '_')}.wav"
            noisy = np.clip(item.waveform + 0.3 * rng.uniform(-1, 1, item.waveform.size), -1, 1).astype(np.float32)
            save_audio(folder / audio, noisy, 16000)
            rows.append({"id": item.id, "success": True, "target": "go", "audio": audio, "db_x_delta": -20.0,
                         "snr_db": 10.0})
        (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
