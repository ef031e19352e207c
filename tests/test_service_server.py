"""The service under a real uvicorn on loopback: limits enforced while the body streams, slow
clients, overload, many-channel files, graceful shutdown. Small and bounded: a few sockets, a
few seconds at most; the only timing assertions are generous bounds ("refused within 1 s")."""

import io
import select
import socket
import threading
import time
import warnings

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from asrguard.service.app import create_app  # noqa: E402
from asrguard.service.limits import Limits  # noqa: E402
from asrguard.service.server import ServerThread  # noqa: E402
from _detect_helpers import clips, fitted_detector, tiny_recognizer  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)
GB = 1 << 30
PREAMBLE = (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            b"Content-Type: audio/wav\r\n\r\n")


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return fitted_detector(tiny_recognizer(tmp_path_factory.mktemp("svc_server")))


def _wav(x, rate=16000):
    buf = io.BytesIO()
    sf.write(buf, np.asarray(x, dtype=np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))
    except OSError:
        return None


def _connect(url):
    host, port = url.rsplit("/", 1)[-1].split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def _stream(url, head: bytes, total: int, *, chunked: bool, budget: float = 5.0):
    """Send up to ``total`` body bytes as fast as the server takes them, reading any answer as
    soon as it comes; returns (status line, bytes sent, seconds). Bounded by ``budget``."""
    sock = _connect(url)
    sock.sendall(head)
    sock.setblocking(False)
    block = b"\0" * 65536
    piece = (b"%x\r\n" % len(block) + block + b"\r\n") if chunked else block
    sent, got, start = 0, b"", time.monotonic()
    try:
        while time.monotonic() - start < budget and b"\r\n" not in got:
            readable, writable, _ = select.select([sock], [sock] if sent < total else [], [], 0.05)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                got += data
            elif writable:
                try:
                    sock.sendall(piece)
                    sent += len(block)
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    time.sleep(0.001)
    finally:
        sock.close()
    return got.split(b"\r\n")[0].decode(), sent, time.monotonic() - start


@pytest.fixture(scope="module")
def server(detector):
    app = create_app(detector=detector, limits=Limits(max_bytes=200_000, max_seconds=3.0, max_inflight=2,
                                                      body_timeout=1.5))
    with ServerThread(app) as url:
        yield url


def test_one_gigabyte_with_content_length_is_refused_at_once(server):
    rss = _rss_mb()
    head = (b"POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
            b"Content-Length: %d\r\n\r\n" % GB)
    status, sent, seconds = _stream(server, head, GB, chunked=False)
    assert status.startswith("HTTP/1.1 413") and seconds < 1.0 and sent < 64 * 1024 * 1024
    if rss is not None:
        assert _rss_mb() - rss < 50


def test_one_gigabyte_chunked_is_cut_at_the_limit(server):
    rss = _rss_mb()
    head = (b"POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(PREAMBLE) + PREAMBLE + b"\r\n")
    status, sent, seconds = _stream(server, head, GB, chunked=True)
    assert status.startswith("HTTP/1.1 413") and seconds < 1.0 and sent < 64 * 1024 * 1024
    if rss is not None:
        assert _rss_mb() - rss < 50
    assert httpx.get(server + "/healthz", timeout=5).status_code == 200


def _trickler(url, stop: threading.Event, answer: list):
    """A client sending its body a few bytes at a time (bounded: 30 sends at most)."""
    sock = _connect(url)
    sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
                 b"Content-Length: 100000\r\n\r\n" + PREAMBLE)
    sock.settimeout(0.1)
    try:
        for _ in range(30):
            if stop.is_set():
                break
            try:
                sock.sendall(b"ab")
                data = sock.recv(4096)
                if data:
                    answer.append(data.split(b"\r\n")[0].decode())
                    break
            except socket.timeout:
                continue
            except OSError:
                break
    finally:
        sock.close()


def test_slow_client_is_cut_and_does_not_delay_others_and_overload_is_503(server):
    stop, answers = threading.Event(), []
    slow = [threading.Thread(target=_trickler, args=(server, stop, answers)) for _ in range(2)]
    for t in slow:
        t.start()
    try:
        time.sleep(0.3)  # both slots of max_inflight=2 are now held by slow clients
        with httpx.Client(timeout=5) as c:
            busy = c.post(server + "/v1/detect", files={"file": ("ok.wav", _wav(clips(1, 5)[0]), "audio/wav")})
            assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
            assert busy.json()["code"] == "overloaded"
            health = c.get(server + "/healthz")
            assert health.status_code == 200 and health.json()["inflight"] == 2
    finally:
        for t in slow:
            t.join(timeout=10)
        stop.set()
    # each slow client got a 408 after the body timeout, and then others are served again
    assert answers == ["HTTP/1.1 408 Request Timeout"] * 2
    ok = httpx.post(server + "/v1/detect", files={"file": ("ok.wav", _wav(clips(1, 5)[0]), "audio/wav")}, timeout=10)
    assert ok.status_code == 200


def test_many_channel_files_are_refused_from_the_header(server):
    # a smaller copy of the 51 KB, 255-channel, 48 kHz OGG: 0.1 s long, still 1.2 M samples to decode
    buf = io.BytesIO()
    sf.write(buf, np.full((4800, 255), 0.1, np.float32), 48000, format="OGG", subtype="VORBIS")
    data, rss, answers = buf.getvalue(), _rss_mb(), []

    def send():
        r = httpx.post(server + "/v1/detect", files={"file": ("wide.ogg", data, "audio/ogg")}, timeout=10)
        answers.append((r.status_code, r.json()["code"]))

    threads = [threading.Thread(target=send) for _ in range(2)]  # max_inflight is 2 here
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert answers == [(413, "audio_too_large")] * 2
    if rss is not None:
        assert _rss_mb() - rss < 100


class _SlowDetector:
    """The tiny detector, slowed down so that a request is surely in flight at shutdown."""

    def __init__(self, detector, seconds: float):
        self._detector, self._seconds = detector, seconds

    def __getattr__(self, name):
        return getattr(self._detector, name)

    def explain(self, *args, **kwargs):
        time.sleep(self._seconds)
        return self._detector.explain(*args, **kwargs)


def test_graceful_shutdown_finishes_requests_in_flight(detector):
    app = create_app(detector=_SlowDetector(detector, 0.8), limits=Limits(max_seconds=3.0))
    answers = []
    thread = ServerThread(app)
    url = thread.__enter__()

    def send():
        r = httpx.post(url + "/v1/detect", files={"file": ("ok.wav", _wav(clips(1, 5)[0]), "audio/wav")}, timeout=10)
        answers.append(r.status_code)

    client = threading.Thread(target=send)
    client.start()
    deadline = time.monotonic() + 5
    while app.state.scorer.waiting == 0 and app.inflight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    thread.__exit__(None, None, None)  # like SIGTERM: stop accepting, finish what is in flight
    client.join(timeout=10)
    assert answers == [200]
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/healthz", timeout=2)


def test_healthz_answers_during_scoring(detector):
    app = create_app(detector=_SlowDetector(detector, 0.5), limits=Limits(max_seconds=3.0))
    with ServerThread(app) as url:
        results = []
        senders = [threading.Thread(target=lambda: results.append(httpx.post(
            url + "/v1/detect", files={"file": ("ok.wav", _wav(clips(1, 5)[0]), "audio/wav")}, timeout=10
        ).status_code)) for _ in range(3)]
        for t in senders:
            t.start()
        time.sleep(0.2)
        start = time.monotonic()
        health = httpx.get(url + "/healthz", timeout=5)
        waited = time.monotonic() - start
        for t in senders:
            t.join(timeout=10)
    assert health.status_code == 200 and waited < 1.0  # not queued behind ~1.5 s of scoring
    assert results == [200] * 3
