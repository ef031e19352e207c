"""Recognition quality of any transcriber on labelled audio, overall and per subset."""

from __future__ import annotations

import time
from typing import Callable, Sequence

from rich.progress import Progress

from ..asr.base import AudioBatch, require
from .metrics import recognition_metrics


def evaluate_transcriber(recognizer, items: Sequence, *, normalize: Callable[[str], str] | None = None,
                         batch_size: int = 1, progress: bool = True, per_subset: bool = False) -> dict:
    """CER / WER / word accuracy of ``recognizer`` on ``items`` (:class:`~asrguard.data.records.Utterance`
    records holding their waveforms).

    ``normalize`` is applied to reference and hypothesis alike before scoring (for example
    :func:`asrguard.text.normalize_english`). The result has ``seconds_per_utterance`` and
    ``real_time_factor`` (transcription time over audio duration) and, with ``per_subset``,
    ``per_subset``: the same metrics for each non-empty ``source`` (english_speech's reporting
    subsets).

    Example:
        >>> metrics = evaluate_transcriber(rec, items, normalize=normalize_english, per_subset=True)  # doctest: +SKIP
        >>> metrics["per_subset"]["librispeech-test-other"]["wer"]                    # doctest: +SKIP
        0.152
    """
    require(recognizer, "transcribe", user="recognition evaluation")
    hypotheses: list[str] = []
    started = time.perf_counter()
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("transcribing", total=len(items))
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            batch = AudioBatch.from_waveforms([i.waveform for i in chunk], recognizer.sample_rate, validate=False)
            hypotheses.extend(recognizer.transcribe(batch))
            bar.advance(task, len(chunk))
    elapsed = time.perf_counter() - started
    norm = normalize or (lambda text: text)
    references = [norm(i.transcript) for i in items]
    normalized = [norm(h) for h in hypotheses]
    metrics = recognition_metrics(references, normalized)
    audio_seconds = sum(len(i.waveform) for i in items) / recognizer.sample_rate
    metrics.update(seconds_per_utterance=elapsed / len(items), real_time_factor=elapsed / audio_seconds,
                   audio_seconds=audio_seconds, speakers=sorted({i.speaker for i in items}))
    subsets = sorted({i.source for i in items} - {""}) if per_subset else []
    if subsets:
        metrics["per_subset"] = {}
        for subset in subsets:
            index = [k for k, i in enumerate(items) if i.source == subset]
            metrics["per_subset"][subset] = recognition_metrics([references[k] for k in index],
                                                                [normalized[k] for k in index])
    metrics["examples"] = [{"id": i.id, "reference": i.transcript, "hypothesis": h}
                           for i, h in zip(items, hypotheses)]
    return metrics
