import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ASRGUARD_DATA", REPO.parent / "shared" / "data"))

# tests use small tensors: one thread avoids oversubscription on a shared 2-core machine
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Entry points such as the dropout sweep set their own thread count; every test starts at one."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A saved random-init CTC model small enough for CLI tests."""
    from asrguard.asr.ctc import CTCConfig, CTCRecognizer

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "m"
    CTCRecognizer(CTCConfig(dense_size=32, lstm_size=16)).save(path)
    return path


def tone(freq=440.0, seconds=0.5, rate=16000, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def shared_data():
    if not (SHARED_DATA / "fsdd").exists():
        pytest.skip(f"real corpora not found at {SHARED_DATA} (a fresh clone has no ../shared/data)")
    return SHARED_DATA
