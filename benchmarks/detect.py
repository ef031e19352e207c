"""Cost of scoring one 2 s utterance with the detector (I = 50 realisations) vs one plain transcription.

Scoring = validate the audio, draw I dropout realisations in one batched pass, compute every
uncertainty feature (P^char with the medoid, P^prob, entropy, MI, variance, aKLD) and run the
classifier. Prints medians over repeated runs in one process and ``ratio_score_over_transcribe``
(target <= 5). ``ratio_floor_over_transcribe`` adds the features and classifier to the
realisation pass's floor (its recurrent layers and matrix products alone, see
``realizations.py``): what scoring would cost if everything else in that pass were free.

    python benchmarks/detect.py --json
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from _timing import median_seconds, print_result
from realizations import floor_seconds

from asrguard.asr.ctc import DEFAULT_MODEL_DIR, CTCRecognizer
from asrguard.audio import load_audio
from asrguard.defaults import DEFAULT_DETECTOR_DIR, EXAMPLE_AUDIO
from asrguard.detect.classifiers import make_classifier
from asrguard.detect.detector import Detector
from asrguard.uncertainty.features import FeatureExtractor, FeatureTable


def two_second_utterance(rate: int, seconds: float) -> np.ndarray:
    """The bundled example (1.6 s of speech) padded with faint noise to ``seconds``."""
    speech, _ = load_audio(EXAMPLE_AUDIO, rate)
    n = int(seconds * rate)
    out = 0.001 * np.random.default_rng(0).standard_normal(n).astype(np.float32)
    out[: min(n, len(speech))] += speech[:n]
    return np.clip(out, -1, 1)


def synthetic_detector(recognizer, n: int, p: float) -> Detector:
    """Fallback when nothing is shipped yet: a char-svm4 detector fitted on made-up features."""
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(20), np.ones(20)].astype(int)
    moments = np.abs(rng.normal(size=(40, 4))) + 3 * y[:, None]
    table = FeatureTable({"char_moments": moments})
    det = Detector(recognizer, FeatureExtractor(n=n, p=p), make_classifier("char-svm4"))
    return det.fit_features(table.take(y == 0), table.take(y == 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="utterance length")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the project runs on 2 cores)")
    parser.add_argument("--realizations", type=int, default=None,
                        help="score with this many realisations instead of the detector's own I (cost only: "
                             "the classifier was fitted at its own I)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    shipped_model = (DEFAULT_MODEL_DIR / "config.json").exists()
    shipped_detector = (DEFAULT_DETECTOR_DIR / "detector.json").exists()
    if shipped_model and shipped_detector:
        recognizer = CTCRecognizer.load()
        detector = Detector.load(DEFAULT_DETECTOR_DIR, recognizer)
    else:
        recognizer = CTCRecognizer.load() if shipped_model else CTCRecognizer()
        detector = synthetic_detector(recognizer, 50, 0.1)
    if args.realizations is not None:
        c = detector.feature_extractor.config
        detector.feature_extractor = FeatureExtractor(n=args.realizations, p=c.p, seed=c.seed,
                                                      max_distance=c.max_distance)
    waveform = two_second_utterance(recognizer.sample_rate, args.seconds)

    transcribe_s = median_seconds(lambda: recognizer.transcribe([waveform]), args.repeats)
    score_s = median_seconds(lambda: detector.score(waveform), args.repeats)
    realizations_s = median_seconds(lambda: detector.feature_extractor.realizations(recognizer, waveform),
                                    args.repeats)
    c = detector.feature_extractor.config
    lstm_s, matmul_s = floor_seconds(recognizer, waveform, c.n, c.p, args.repeats)
    features_s = max(score_s - realizations_s, 0.0)
    result = {
        "model": "shipped" if shipped_model else "untrained (no shipped model found)",
        "detector": f"shipped ({detector.classifier.name})" if shipped_model and shipped_detector
        else "synthetic char-svm4 (no shipped detector found)",
        "n_realizations": c.n, "p": c.p, "seconds_audio": args.seconds, "torch_threads": torch.get_num_threads(),
        "transcribe_s": transcribe_s, "score_s": score_s, "realizations_only_s": realizations_s,
        "features_and_classifier_s": features_s, "lstm_s": lstm_s, "matmul_s": matmul_s,
        "ratio_score_over_transcribe": score_s / transcribe_s,
        "ratio_floor_over_transcribe": (lstm_s + matmul_s + features_s) / transcribe_s,
    }
    print_result(result, args.json)


if __name__ == "__main__":
    main()
