"""Cost of I dropout realisations of one 2 s utterance: batched pass vs loop vs one transcription.

Prints medians over repeated runs in one process, and the two ratios the project tracks:
``ratio_batched_over_single`` (target <= 5) and ``ratio_loop_over_batched``.

The physical floor: dropout precedes every layer after the first dense one, so each of those
layers must run I times. ``lstm_s`` times the two recurrent layers alone for I realisations,
``matmul_s`` the other matrix products the batched pass makes (dense layers 2..n, post,
output), both in the precision the batched pass uses. ``ratio_floor_over_single`` is their sum
over one transcription: no batched pass of this model can beat it on this machine. What the
batched pass spends beyond it (``batched_s - lstm_s - matmul_s``) is the front end, masks,
biases, clipping, log-softmax and greedy decoding.

    python benchmarks/realizations.py --json
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from _timing import median_seconds, print_result

from asrguard.asr.base import AudioBatch
from asrguard.asr.ctc import DEFAULT_MODEL_DIR, CTCRecognizer, lstm_time_major


def floor_seconds(recognizer: CTCRecognizer, waveform: np.ndarray, n: int, p: float,
                  repeats: int) -> tuple[float, float]:
    """Median seconds of the recurrent layers and of the other matrix products for ``n`` realisations.

    Each runs alone, on inputs of its real shape, in the precision the batched pass uses.
    """
    model = recognizer.model
    dtype = recognizer._realization_dtype("auto")
    batch = AudioBatch.from_waveforms([waveform], recognizer.sample_rate)
    with torch.no_grad():
        features, _ = model.features(batch.waveforms, batch.lengths)
        hidden = model.first_layer(features).expand(n, -1, -1).transpose(0, 1).contiguous().to(dtype)
        weights = model._realization_weights(1.0 - p, dtype)
    # every non-recurrent product after the first dropout: dense layers 2..n, post, output
    products = [weight for weight, _ in weights["dense"] + [weights["post"], weights["output"]]]
    inputs = {width: torch.ones(*hidden.shape[:2], width, dtype=dtype) for width in {w.shape[0] for w in products}}

    def lstm_only():
        with torch.no_grad():
            for name in ("lstm_forward", "lstm_backward"):
                lstm_time_major(weights[name], hidden)

    def matmuls_only():
        with torch.no_grad():
            for weight in products:
                torch.matmul(inputs[weight.shape[0]], weight)

    return median_seconds(lstm_only, repeats), median_seconds(matmuls_only, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50, help="realisations I")
    parser.add_argument("--p", type=float, default=0.1, help="dropout rate")
    parser.add_argument("--seconds", type=float, default=2.0, help="utterance length")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()

    shipped = (DEFAULT_MODEL_DIR / "config.json").exists()
    recognizer = CTCRecognizer.load() if shipped else CTCRecognizer()
    rng = np.random.default_rng(0)
    n_samples = int(args.seconds * recognizer.sample_rate)
    t = np.arange(n_samples) / recognizer.sample_rate
    waveform = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
                + 0.01 * rng.standard_normal(n_samples)).astype(np.float32) / 2
    batch = AudioBatch.from_waveforms([waveform], recognizer.sample_rate)

    def single():
        recognizer.transcribe(batch)

    def batched():
        recognizer.realizations(waveform, args.n, seed=0, p=args.p)

    def loop():
        with torch.no_grad(), recognizer.stochastic(args.p, seed=0):
            for _ in range(args.n):
                log_probs, lengths = recognizer.log_probs(batch)
                recognizer.decode(log_probs, lengths)

    single_s = median_seconds(single, args.repeats)
    batched_s = median_seconds(batched, args.repeats)
    loop_s = median_seconds(loop, max(3, args.repeats // 2))
    lstm_s, matmul_s = floor_seconds(recognizer, waveform, args.n, args.p, args.repeats)
    result = {
        "model": "shipped" if shipped else "untrained (no shipped model found)",
        "n_realizations": args.n, "p": args.p, "seconds_audio": args.seconds,
        "torch_threads": torch.get_num_threads(), "realization_scheme": recognizer.realization_scheme(),
        "single_s": single_s, "batched_s": batched_s, "loop_s": loop_s, "lstm_s": lstm_s, "matmul_s": matmul_s,
        "ratio_batched_over_single": batched_s / single_s,
        "ratio_loop_over_batched": loop_s / batched_s,
        "ratio_lstm_over_single": lstm_s / single_s,
        "ratio_floor_over_single": (lstm_s + matmul_s) / single_s,
    }
    print_result(result, args.json)


if __name__ == "__main__":
    main()
