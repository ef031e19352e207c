"""How one LSTM layer of the CTC model's size scales with the number of realisations in a batch (both cores).

    python docs/results/sequential/lstm_scaling.py > docs/results/sequential/lstm_scaling.json

One direction of the recurrent layer (input 256, hidden 160) over 100 steps, the frames of a 2 s utterance, as
the realisation pass runs it (``torch.lstm``, time-major, oneDNN), in float32 and bfloat16, at batch 1 (a
transcription) and at 10, 20 and 50 realisations; medians of 50 runs in milliseconds. If the time per
realisation stops falling as the batch grows, realisations cost compute, not per-step overhead, and no batching
makes them cheaper. Seconds.
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from _timing import median_seconds  # noqa: E402

torch.set_num_threads(2)
STEPS, INPUT, HIDDEN = 100, 256, 160
out = {"threads": torch.get_num_threads(), "steps": STEPS, "input": INPUT, "hidden": HIDDEN, "ms": {}}
for dtype in (torch.float32, torch.bfloat16):
    generator = torch.Generator().manual_seed(0)
    weights = [0.05 * torch.randn(4 * HIDDEN, INPUT, generator=generator), 0.05 * torch.randn(4 * HIDDEN, HIDDEN,
               generator=generator), torch.zeros(4 * HIDDEN), torch.zeros(4 * HIDDEN)]
    weights = [w.to(dtype) for w in weights]
    for batch in (1, 10, 20, 50):
        x = torch.randn(STEPS, batch, INPUT, generator=generator).to(dtype)
        zeros = x.new_zeros(1, batch, HIDDEN)
        with torch.no_grad():
            ms = 1e3 * median_seconds(lambda: torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, False, False,
                                                         False), 50)
        out["ms"][f"{str(dtype).removeprefix('torch.')} batch {batch}"] = {"total": round(ms, 3),
                                                                          "per_row": round(ms / batch, 4)}
print(json.dumps(out, indent=1))
