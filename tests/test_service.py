"""The HTTP API (FastAPI TestClient) with a tiny detector: answers, refusals, auth, rate limit, metrics, logs."""

import io
import json
import logging
import warnings

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("prometheus_client")
with warnings.catch_warnings():  # starlette's notice about httpx's successor is not ours to fix
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from asrguard.errors import AudioLimitError, NoSpeechError  # noqa: E402
from asrguard.service.access import ApiKeys, parse_rate  # noqa: E402
from asrguard.service.app import create_app  # noqa: E402
from asrguard.service.limits import Limits  # noqa: E402
from asrguard.service.server import access_settings  # noqa: E402
from asrguard.service.upload import decode_upload  # noqa: E402
from _detect_helpers import clips, fitted_detector, tiny_recognizer  # noqa: E402

KEY = "test-key-0123456789abcdef"
LIMITS = Limits(max_bytes=200_000, max_seconds=3.0)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return fitted_detector(tiny_recognizer(tmp_path_factory.mktemp("svc")))


@pytest.fixture(scope="module")
def client(detector):
    return TestClient(create_app(detector=detector, limits=LIMITS))


def _wav(x, rate=16000, subtype="PCM_16"):
    buf = io.BytesIO()
    sf.write(buf, np.asarray(x, dtype=np.float32), rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def _clip():
    return clips(1, 5)[0]


def _post(client, name, data, media="audio/wav", **kwargs):
    return client.post("/v1/detect", files={"file": (name, data, media)}, **kwargs)


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.json()["max_seconds"] == 3.0 and r.json()["auth"] is False
    assert r.headers["x-request-id"]


def test_good_upload_gets_a_verdict(client):
    r = _post(client, "ok.wav", _wav(_clip()))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verdict"] in ("benign", "adversarial") and isinstance(body["adversarial"], bool)
    assert isinstance(body["score"], float) and isinstance(body["transcript"], str)
    assert sum(d["count"] for d in body["distinct"]) == body["realizations"]
    assert sum(body["histogram"]) == body["realizations"]


def test_raw_audio_body_is_accepted_too(client):
    r = client.post("/v1/detect?filename=raw.wav", content=_wav(_clip()), headers={"content-type": "audio/wav"})
    assert r.status_code == 200 and r.json()["file"] == "raw.wav"


def _float_wav(x):
    return _wav(x, subtype="FLOAT")


# every bad request of the issue: (what, request kwargs, expected status, words the message must hold)
BAD_REQUESTS = [
    ("no file", {}, 400, "no file"),
    ("json body", {"json": {"file": "x.wav"}}, 415, "multipart/form-data"),
    ("empty file", {"files": {"file": ("empty.wav", b"", "audio/wav")}}, 400, "empty"),
    ("corrupt file", {"files": {"file": ("broken.wav", b"RIFF1234WAVEjunkjunk", "audio/wav")}}, 400,
     "not a readable audio file"),
    ("text named .wav", {"files": {"file": ("notes.wav", b"hello, this is text " * 20, "audio/wav")}}, 400,
     "not a readable audio file"),
    ("wrong content type", {"files": {"file": ("x.txt", b"hello", "text/plain")}}, 415, "not audio"),
    ("huge field name", {"files": {"x" * 5000: ("a.wav", b"RIFF", "audio/wav")}}, 400, "field"),
    ("other field name", {"files": {"audio": ("a.wav", b"RIFF", "audio/wav")}}, 400, "'file'"),
    ("two files", {"files": [("file", ("a.wav", b"1", "audio/wav")), ("file", ("b.wav", b"2", "audio/wav"))]}, 400,
     "more than one part"),
    ("over the byte limit", {"files": {"file": ("big.wav", b"\0" * 300_000, "audio/wav")}}, 413, "limit"),
]


@pytest.mark.parametrize("what,kwargs,status,words", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_a_clear_json_error_and_the_server_keeps_serving(client, what, kwargs, status, words):
    r = client.post("/v1/detect", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "code"} and words in body["error"], body
    assert "BytesIO" not in body["error"] and "Traceback" not in body["error"]  # no library internals
    assert _post(client, "ok.wav", _wav(_clip())).status_code == 200


def test_bad_audio_gets_its_typed_status(client):
    nan = _post(client, "nan.wav", _float_wav(np.full(8000, np.nan)))
    assert nan.status_code == 400 and "NaN" in nan.json()["error"] and nan.json()["code"] == "invalid_audio"
    long = _post(client, "long.wav", _wav(np.zeros(16000 * 5)))
    assert long.status_code == 413 and "3 s" in long.json()["error"] and long.json()["code"] == "audio_too_large"
    # ten minutes of FLAC silence is a few KB: refused from its header, not decoded
    buf = io.BytesIO()
    sf.write(buf, np.zeros(8000 * 600, dtype=np.int16), 8000, format="FLAC")
    assert len(buf.getvalue()) < LIMITS.max_bytes
    ten_min = _post(client, "ten_minutes.flac", buf.getvalue(), media="audio/flac")
    assert ten_min.status_code == 413 and "600.0 s long" in ten_min.json()["error"]
    fast = _post(client, "fast.wav", _wav(0.3 * np.ones(9600), rate=96000))
    assert fast.status_code == 400 and "96000 Hz" in fast.json()["error"]


def test_silence_and_near_empty_input_are_refused_not_scored(client):
    for name, x in [("silence.wav", np.zeros(16000)), ("one.wav", [0.5]), ("ten.wav", np.full(10, 0.5)),
                    ("hum.wav", 1e-5 * np.sin(np.arange(16000)))]:
        r = _post(client, name, _wav(x, subtype="FLOAT"))
        assert r.status_code == 422, (name, r.text)
        assert r.json()["code"] == "no_speech" and "score" not in r.json() and "no speech" in r.json()["error"]


def test_stereo_8khz_and_path_like_names_are_served(client):
    stereo = _post(client, "stereo.wav", _wav(np.stack([_clip(), 0.5 * _clip()], axis=1)))
    assert stereo.status_code == 200, stereo.text
    low = _post(client, "low.wav", _wav(_clip()[::2], rate=8000))
    assert low.status_code == 200 and low.json()["duration_s"] == pytest.approx(0.4, abs=0.01)
    sneaky = _post(client, "../../etc/passwd.wav", _wav(_clip()))
    assert sneaky.status_code == 200 and sneaky.json()["file"] == "passwd.wav"


def test_decoding_is_bounded_by_channels_times_frames(detector):
    # 64 channels of 0.5 s = 512,000 samples, over this limit of 200,000, though only 0.5 s long
    data = _wav(np.zeros((8000, 64)) + 0.1)
    with pytest.raises(AudioLimitError, match="64 channels"):
        decode_upload(data, "wide.wav", 16000, limits=Limits(max_samples=200_000))
    with pytest.raises(NoSpeechError):
        decode_upload(_wav(np.zeros(8000)), "quiet.wav", 16000)
    client = TestClient(create_app(detector=detector, limits=Limits(max_samples=200_000)))
    r = _post(client, "wide.wav", data)
    assert r.status_code == 413 and r.json()["code"] == "audio_too_large"


def test_api_key_required_when_keys_are_set(detector):
    client = TestClient(create_app(detector=detector, limits=LIMITS, api_keys=ApiKeys([KEY])))
    assert client.get("/healthz").status_code == 200  # health checks need no key
    missing = _post(client, "ok.wav", _wav(_clip()))
    assert missing.status_code == 401 and missing.json()["code"] == "unauthorized"
    assert "Bearer" in missing.headers["www-authenticate"]
    assert _post(client, "ok.wav", _wav(_clip()), headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics").status_code == 401
    ok = _post(client, "ok.wav", _wav(_clip()), headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200
    assert _post(client, "ok.wav", _wav(_clip()), headers={"X-API-Key": KEY}).status_code == 200


def test_rate_limit_answers_429_with_retry_after(detector):
    client = TestClient(create_app(detector=detector, limits=LIMITS, rate_limit=parse_rate("2/min")))
    codes = [_post(client, "ok.wav", _wav(_clip())).status_code for _ in range(3)]
    assert codes[:2] == [200, 200] and codes[2] == 429
    r = _post(client, "ok.wav", _wav(_clip()))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "rate limit" in r.json()["error"]
    assert client.get("/healthz").status_code == 200  # the limit is on detection only


def test_access_is_off_on_loopback_and_on_beyond_it(tmp_path, monkeypatch):
    assert access_settings("127.0.0.1") == (None, None, [])
    assert access_settings("::1")[:2] == (None, None)
    monkeypatch.setenv("HOME", str(tmp_path))
    keys, per_minute, warned = access_settings("0.0.0.0")
    assert keys is not None and len(keys) == 1 and per_minute == 60.0 and len(warned) == 2
    key_file = tmp_path / ".config" / "asrguard" / "api-keys"
    assert key_file.stat().st_mode & 0o077 == 0  # readable by its owner only
    own = tmp_path / "keys.txt"
    own.write_text("# ops\n" + KEY + "\n")
    keys, per_minute, _ = access_settings("0.0.0.0", own, "off")
    assert keys.check(KEY) and not keys.check(KEY[:-1]) and per_minute is None


def test_metrics_count_requests_verdicts_and_refusals(detector):
    client = TestClient(create_app(detector=detector, limits=LIMITS))
    verdict = _post(client, "ok.wav", _wav(_clip())).json()["verdict"]
    _post(client, "silence.wav", _wav(np.zeros(8000)))
    _post(client, "x.txt", b"hi", media="text/plain")
    text = client.get("/metrics").text
    assert 'asrguard_requests_total{path="/v1/detect",status="200"} 1.0' in text
    assert 'asrguard_requests_total{path="/v1/detect",status="415"} 1.0' in text
    assert f'asrguard_verdicts_total{{verdict="{verdict}"}} 1.0' in text
    assert 'asrguard_verdicts_total{verdict="no_speech"} 1.0' in text
    for name in ("asrguard_request_seconds_bucket", "asrguard_queue_depth", "asrguard_inflight_requests",
                 "asrguard_batch_size_bucket", "asrguard_stage_seconds_bucket"):
        assert name in text


def _access_lines(caplog):
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "asrguard.service.access"]


@pytest.mark.parametrize("log_content", [False, True])
def test_request_log_is_structured_and_holds_content_only_when_asked(detector, caplog, log_content):
    client = TestClient(create_app(detector=detector, limits=LIMITS, log_content=log_content))
    with caplog.at_level(logging.INFO, logger="asrguard.service.access"):
        r = _post(client, "secret-name.wav", _wav(_clip()), headers={"X-Request-ID": "req-42"})
    assert r.headers["x-request-id"] == "req-42"
    (line,) = [x for x in _access_lines(caplog) if x["path"] == "/v1/detect"]
    assert line["id"] == "req-42" and line["status"] == 200 and line["verdict"] == r.json()["verdict"]
    assert ("transcript" in line) == log_content and ("file" in line) == log_content
    assert ("secret-name" in json.dumps(line)) == log_content


def test_web_page_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for needle in ('id="file"', "v1/detect", "createElementNS", "<audio"):
        assert needle in r.text
    assert "https://" not in r.text  # nothing loaded from elsewhere: works offline


def test_unexpected_failures_are_json_500_with_the_request_id(detector, monkeypatch):
    client = TestClient(create_app(detector=detector, limits=LIMITS), raise_server_exceptions=False)
    monkeypatch.setattr(detector, "explain_batch", lambda *a, **k: 1 / 0)
    r = _post(client, "ok.wav", _wav(_clip()), headers={"X-Request-ID": "req-500"})
    assert r.status_code == 500 and r.json()["code"] == "internal_error" and "req-500" in r.json()["error"]
    assert "ZeroDivision" not in r.text


def test_serve_command_passes_its_options_on(monkeypatch):
    from typer.testing import CliRunner

    import asrguard.defaults
    import asrguard.service.server
    from asrguard.cli import app

    calls = {}
    monkeypatch.setattr(asrguard.defaults, "load_detector", lambda *a, **k: "DETECTOR")
    monkeypatch.setattr(asrguard.service.server, "serve_forever", lambda det, host, port, **kw: calls.update(
        det=det, host=host, port=port, **kw))
    result = CliRunner().invoke(app, ["serve", "--port", "9001", "--max-seconds", "5", "--max-inflight", "4",
                                      "--rate-limit", "10/min", "--body-timeout", "3", "--log-content",
                                      "--batch-size", "4", "--batch-wait-ms", "5"])
    assert result.exit_code == 0, result.output
    assert calls["det"] == {"default": "DETECTOR"} and calls["host"] == "127.0.0.1" and calls["port"] == 9001
    assert calls["limits"].max_seconds == 5 and calls["limits"].max_inflight == 4 and calls["limits"].body_timeout == 3
    assert calls["limits"].batch_size == 4 and calls["limits"].batch_wait_ms == 5
    assert calls["rate_limit"] == "10/min" and calls["log_content"] is True and calls["api_key_file"] is None


# --- several detectors: chosen per request by name --------------------------------------------

@pytest.fixture(scope="module")
def other(tmp_path_factory):
    return fitted_detector(tiny_recognizer(tmp_path_factory.mktemp("svc_other"), seed=1))


@pytest.fixture(scope="module")
def two(detector, other):
    return TestClient(create_app(detectors={"tones": detector, "other": other}, limits=LIMITS))


def _form(parts) -> tuple[bytes, str]:
    """A multipart body with the parts in the order given: (name, filename or None, data)."""
    boundary = "asrguard-test-boundary"
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        kind = "Content-Type: audio/wav\r\n" if filename else ""
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n".encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_healthz_lists_every_detector_with_its_recogniser(two, detector, other):
    health = two.get("/healthz").json()
    assert health["default_detector"] == "tones" and [d["name"] for d in health["detectors"]] == ["tones", "other"]
    listed = {d["name"]: d for d in health["detectors"]}
    assert listed["tones"]["recognizer"]["checksum"] == detector.recognizer.fingerprint()[:12]
    assert listed["other"]["recognizer"]["checksum"] == other.recognizer.fingerprint()[:12]
    assert listed["other"]["threshold"] == other.threshold and listed["tones"]["realizations"] == 8
    assert health["threshold"] == detector.threshold  # the default's settings stay at the top level


def test_a_request_chooses_its_detector_by_query_or_form_field(two, detector, other):
    data = _wav(_clip())
    waveform = decode_upload(data, "ok.wav", 16000)
    chosen = {"default": _post(two, "ok.wav", data).json(),
              "query": _post(two, "ok.wav", data, params={"detector": "other"}).json(),
              "form": two.post("/v1/detect", data={"detector": "other"},
                               files={"file": ("ok.wav", data, "audio/wav")}).json()}
    body, content_type = _form([("file", "ok.wav", data), ("detector", None, b"other")])  # field after the file
    chosen["form after file"] = two.post("/v1/detect", content=body, headers={"content-type": content_type}).json()
    assert chosen["default"]["detector_name"] == "tones"
    assert chosen["default"]["score"] == pytest.approx(detector.explain(waveform)["score"])
    for how in ("query", "form", "form after file"):
        assert chosen[how]["detector_name"] == "other", how
        assert chosen[how]["score"] == pytest.approx(other.explain(waveform)["score"]), how
    assert chosen["default"]["score"] != pytest.approx(chosen["query"]["score"])  # two models, two scores


def test_a_wrong_detector_choice_is_a_clear_400(two):
    data = _wav(_clip())
    unknown = _post(two, "ok.wav", data, params={"detector": "nope"})
    assert unknown.status_code == 400 and unknown.json()["code"] == "unknown_detector"
    assert "'nope'" in unknown.json()["error"] and "tones, other" in unknown.json()["error"]
    both = two.post("/v1/detect", params={"detector": "tones"}, data={"detector": "other"},
                    files={"file": ("ok.wav", data, "audio/wav")})
    assert both.status_code == 400 and "name one" in both.json()["error"]
    long = two.post("/v1/detect", data={"detector": "x" * 100}, files={"file": ("ok.wav", data, "audio/wav")})
    assert long.status_code == 400 and "over 64 bytes" in long.json()["error"]
    body, content_type = _form([("detector", None, b"other"), ("detector", None, b"tones"), ("file", "a.wav", data)])
    twice = two.post("/v1/detect", content=body, headers={"content-type": content_type})
    assert twice.status_code == 400 and "more than one part named 'detector'" in twice.json()["error"]
    assert _post(two, "ok.wav", data).status_code == 200  # and the server keeps serving


def test_serve_pairs_detectors_with_recognisers_and_names_them(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import asrguard.service.server
    from asrguard.cli import app
    from asrguard.detect.detector import Detector

    rec = tiny_recognizer(tmp_path)
    model = tmp_path / "model0"
    fitted_detector(rec).save(tmp_path / "tones")
    fitted_detector(rec, classifier="char-svm4").save(tmp_path / "again" / "tones")
    calls = {}
    monkeypatch.setattr(asrguard.service.server, "serve_forever", lambda det, host, port, **kw: calls.update(det=det))
    detectors = ["--detector", str(tmp_path / "tones"), "--detector", str(tmp_path / "again" / "tones")]
    result = CliRunner().invoke(app, ["serve", *detectors, "--recognizer", f"ctc:{model}"])
    assert result.exit_code == 0, result.output
    served = calls["det"]
    assert list(served) == ["tones", "tones-2"] and all(isinstance(d, Detector) for d in served.values())
    assert served["tones"].recognizer is served["tones-2"].recognizer  # one recogniser loaded once, shared
    mismatched = CliRunner().invoke(app, ["serve", *detectors, *detectors[:2], "--recognizer", f"ctc:{model}",
                                          "--recognizer", f"ctc:{model}"])
    assert mismatched.exit_code == 2 and "one per --detector" in mismatched.output
    # a detector folder on a recogniser it was not fitted for is refused with the binding's message
    wrong = CliRunner().invoke(app, ["serve", "--detector", str(tmp_path / "tones")])
    assert wrong.exit_code == 2 and "fitted for recogniser" in wrong.output
