"""What one batch of k realisations costs, as a ratio to one transcription (shipped model and detector, both cores).

For held-out utterances of the sequential experiment's corpora, prints per utterance the median time of: one
transcription; the front end and first layer (shared by all realisations); the layers after the first dropout
for k = 1, 2, 5, 10, 20, 50 realisations in the realisation pass's precision; and the uncertainty features
plus classifier on 10 realisations. Ratios in one run (the machine is shared).

    python docs/results/sequential/batch_cost.py > docs/results/sequential/batch_cost.json
"""
import json
import time

import numpy as np
import torch

from asrguard.asr.ctc.masks import realization_keep_masks
from asrguard.attacks.sources import load_items
from asrguard.defaults import load_detector
from asrguard.uncertainty.features import FeatureTable
from asrguard.uncertainty.realizations import Realizations

torch.set_num_threads(2)
detector = load_detector()
rec, config = detector.recognizer, detector.feature_extractor.config
dtype = rec._realization_dtype("auto")


def median_ms(fn, repeats: int = 21) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


rows = []
for item in load_items(["fsdd-digits", "speech-commands"], 6, 0, None, rec.sample_rate):
    x = torch.from_numpy(np.ascontiguousarray(item.waveform, dtype=np.float32))
    transcribe = median_ms(lambda: rec.transcribe([item.waveform]))

    def front():
        with torch.no_grad():
            features, lengths = rec.model.features(x[None], torch.tensor([x.shape[-1]]))
            return rec.model.first_layer(features), int(lengths[0])

    shared, frames = front()
    kept, keep = realization_keep_masks(shared.shape[1], config.n, rec.model.dropout_widths(), config.p, config.seed,
                                        dtype)
    rest = {}
    for k in (1, 2, 5, 10, 20, 50):
        masks = [m[:, :k].contiguous() for m in kept]
        with torch.no_grad():
            rest[k] = median_ms(lambda: rec.model.rest_realizations(shared, masks, keep, dtype)) / transcribe
    with torch.no_grad():
        log_probs = rec.model.rest_realizations(shared, [m[:, :10].contiguous() for m in kept], keep, dtype).float()

    def features_and_classifier():
        transcripts = rec.decode(log_probs, torch.full((10,), frames))
        realizations = Realizations(transcripts, log_probs, frames, config.p, config.seed)
        table = FeatureTable.stack([detector.feature_extractor.from_realizations(realizations)])
        return detector.classifier.decision_function(table)

    rows.append({"item": item.id, "seconds": len(item.waveform) / rec.sample_rate, "transcribe_ms": transcribe,
                 "front_end": median_ms(front) / transcribe, "rest_k": rest,
                 "features_and_classifier_10": median_ms(features_and_classifier) / transcribe})
summary = {"front_end": float(np.median([r["front_end"] for r in rows])),
           "rest_k": {k: float(np.median([r["rest_k"][k] for r in rows])) for k in rows[0]["rest_k"]},
           "features_and_classifier_10": float(np.median([r["features_and_classifier_10"] for r in rows]))}
print(json.dumps({"precision": str(dtype), "torch_threads": torch.get_num_threads(), "median_over_utterances": summary,
                  "rows": rows}, indent=1))
