"""What 20 realisations and their features cost, as ratios to one transcription (session 21; shipped detector,
the benchmark's 2 s clip, both cores, medians of 15). Prints JSON.

    python docs/results/sequential/profile_features.py > docs/results/sequential/profile_features.json
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

from asrguard.defaults import load_detector
from asrguard.uncertainty.features import FeatureTable
from asrguard.uncertainty.realizations import Realizations

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from _timing import median_seconds  # noqa: E402
from detect import two_second_utterance  # noqa: E402

torch.set_num_threads(2)
detector = load_detector()
rec, c = detector.recognizer, detector.feature_extractor.config
waveform = two_second_utterance(16000, 2.0)
x = torch.from_numpy(waveform.astype(np.float32))


def draw():
    with torch.no_grad():
        return rec.realization_log_probs(x, c.n, c.seed, p=c.p, indices=list(range(20)))


log_probs, frames = draw()
log_probs = log_probs.float()


def features_and_classifier():
    transcripts = rec.decode(log_probs, torch.full((log_probs.shape[0],), frames))
    features = detector.feature_extractor.from_realizations(Realizations(transcripts, log_probs, frames, c.p, c.seed,
                                                                         c.masks))
    return detector.classifier.decision_function(FeatureTable.stack([features]))


REPEATS = 15
transcribe = median_seconds(lambda: rec.transcribe([waveform]), REPEATS)
print(json.dumps({"transcribe_ms": 1e3 * transcribe, "draw_20_realisations": median_seconds(draw, REPEATS) / transcribe,
                  "features_and_classifier_20": median_seconds(features_and_classifier, REPEATS) / transcribe}, indent=1))
