"""Recognition metrics of any transcriber, overall and per reporting subset."""

import numpy as np

from asrguard.data import Utterance
from asrguard.evaluate.recognition import evaluate_transcriber


class Echo:
    """Answers "one" for every utterance."""

    sample_rate = 16000

    def transcribe(self, batch):
        return ["one"] * len(batch.lengths)

    def fingerprint(self):
        return None

    def normalize_text(self, text):
        return text


def test_per_subset_groups_by_source_only_when_asked():
    items = [Utterance.from_waveform(f"u{k}", np.zeros(1600, np.float32), 16000, text, "s", source)
             for k, (text, source) in enumerate([("one", "an4"), ("two", "an4"), ("one", "common-voice")])]
    plain = evaluate_transcriber(Echo(), items, progress=False)
    assert "per_subset" not in plain and plain["wer"] == 1 / 3
    grouped = evaluate_transcriber(Echo(), items, progress=False, per_subset=True)
    assert {k: v["wer"] for k, v in grouped["per_subset"].items()} == {"an4": 0.5, "common-voice": 0.0}
