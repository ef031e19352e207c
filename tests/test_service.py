"""The HTTP API (FastAPI TestClient) with a tiny detector."""

import io
import warnings

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
with warnings.catch_warnings():  # starlette's notice about httpx's successor is not ours to fix
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from asrguard.service.app import create_app  # noqa: E402
from _detect_helpers import clips, fitted_detector, tiny_recognizer  # noqa: E402


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    det = fitted_detector(tiny_recognizer(tmp_path_factory.mktemp("svc")))
    return TestClient(create_app(detector=det, max_bytes=200_000, max_seconds=3.0))


def _wav(x, rate=16000):
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_good_upload_gets_a_verdict(client):
    r = client.post("/v1/detect", files={"file": ("ok.wav", _wav(clips(1, 5)[0]), "audio/wav")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verdict"] in ("benign", "adversarial") and isinstance(body["adversarial"], bool)
    assert isinstance(body["score"], float) and isinstance(body["transcript"], str)
    assert sum(d["count"] for d in body["distinct"]) == body["realizations"]
    # an 8 kHz upload is resampled
    r8 = client.post("/v1/detect", files={"file": ("low.wav", _wav(clips(1, 5)[0][::2], 8000), "audio/wav")})
    assert r8.status_code == 200


def test_corrupt_upload_is_400_with_a_clear_message(client):
    r = client.post("/v1/detect", files={"file": ("broken.wav", b"RIFF1234WAVEjunkjunk", "audio/wav")})
    assert r.status_code == 400
    assert "broken.wav" in r.json()["error"] and "not a readable audio file" in r.json()["error"]
    assert "BytesIO" not in r.json()["error"]  # no library internals in a user-facing message
    empty = client.post("/v1/detect", files={"file": ("empty.wav", b"", "audio/wav")})
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    nan = client.post("/v1/detect", files={"file": ("nan.wav", _float_wav(np.full(800, np.nan)), "audio/wav")})
    assert nan.status_code == 400 and "NaN" in nan.json()["error"]


def _float_wav(x):
    buf = io.BytesIO()
    sf.write(buf, np.asarray(x, dtype=np.float32), 16000, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def test_wrong_type_too_big_and_too_long(client):
    r = client.post("/v1/detect", files={"file": ("x.txt", b"hello", "text/plain")})
    assert r.status_code == 415 and "not audio" in r.json()["error"]
    big = client.post("/v1/detect", files={"file": ("big.wav", b"\0" * 300_000, "audio/wav")})
    assert big.status_code == 413 and "limit" in big.json()["error"]
    long = client.post("/v1/detect", files={"file": ("long.wav", _wav(np.zeros(16000 * 5, np.float32)), "audio/wav")})
    assert long.status_code == 413 and "3 s" in long.json()["error"]
    missing = client.post("/v1/detect")
    assert missing.status_code == 422
