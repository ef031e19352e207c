"""The scorer's batches: bounded in size and padded audio, one detector each, answers equal to explain()."""

import asyncio
import io
import threading
import warnings

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("prometheus_client")

from asrguard.errors import ConfigError  # noqa: E402
from asrguard.service.app import create_app  # noqa: E402
from asrguard.service.limits import Limits  # noqa: E402
from asrguard.service.metrics import Metrics  # noqa: E402
from asrguard.service.scorer import Scorer  # noqa: E402
from asrguard.service.server import ServerThread  # noqa: E402
from asrguard.service.upload import decode_upload  # noqa: E402
from _detect_helpers import clips, fitted_detector, tiny_recognizer  # noqa: E402

HOUR = 3600.0  # a wait no test sits out: batches here close on their size or on an empty pipeline


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return fitted_detector(tiny_recognizer(tmp_path_factory.mktemp("batching")))


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    return fitted_detector(tiny_recognizer(tmp_path_factory.mktemp("batching_other"), seed=1))


def audio(n: int) -> list[np.ndarray]:
    return [clips(1, 20 + i, seconds=0.3 + 0.1 * (i % 4))[0] for i in range(n)]


def batch_sizes(metrics: Metrics) -> list[float]:
    """(number of batches, uploads in them) from the batch-size histogram."""
    samples = {s.name: s.value for m in metrics.registry.collect() if m.name == "asrguard_batch_size"
               for s in m.samples}
    return [samples["asrguard_batch_size_count"], samples["asrguard_batch_size_sum"]]


def run(scorer: Scorer, jobs) -> list:
    async def main():
        return await asyncio.gather(*(scorer.explain(det, x, f"x{i}.wav") for i, (det, x) in enumerate(jobs)))

    try:
        return asyncio.run(main())
    finally:
        scorer.shutdown()


def assert_same_answer(batched: dict, alone: dict):
    assert batched["score"] == pytest.approx(alone["score"], rel=1e-9, abs=1e-9)
    assert {k: v for k, v in batched.items() if k != "score"} == {k: v for k, v in alone.items() if k != "score"}


def test_queued_uploads_are_scored_in_batches_of_at_most_batch_size(detector):
    metrics = Metrics()
    xs = audio(8)
    answers = run(Scorer(metrics, batch_size=4, batch_wait=HOUR), [(detector, x) for x in xs])
    assert batch_sizes(metrics) == [2, 8]  # two full batches of four
    for x, answer in zip(xs, answers):
        assert_same_answer(answer, detector.explain(x))


def test_a_batch_holds_one_detector_and_keeps_the_queues_order(detector, other):
    metrics = Metrics()
    xs = audio(6)
    jobs = [(detector if i % 2 == 0 else other, x) for i, x in enumerate(xs)]
    answers = run(Scorer(metrics, batch_size=8, batch_wait=0.0), jobs)
    for (det, x), answer in zip(jobs, answers):
        assert_same_answer(answer, det.explain(x))
    count, uploads = batch_sizes(metrics)
    assert uploads == 6 and count >= 2  # never one batch for both detectors


def test_the_padded_audio_of_a_batch_is_bounded(detector):
    metrics = Metrics()
    xs = [clips(1, 30 + i, seconds=0.5)[0] for i in range(4)]  # 8000 samples each
    # 1.0 s of padded audio (16000 samples) fits two of them per batch, whatever batch_size allows
    run(Scorer(metrics, batch_size=8, batch_wait=HOUR, batch_seconds=1.0), [(detector, x) for x in xs])
    assert batch_sizes(metrics) == [2, 4]


def test_nothing_waits_for_company_when_nothing_else_is_on_the_way(detector):
    metrics = Metrics()
    scorer = Scorer(metrics, batch_size=8, batch_wait=HOUR, admitted=lambda: 1)  # only this request admitted

    async def main():
        return await asyncio.wait_for(scorer.explain(detector, audio(1)[0], "x.wav"), timeout=120)

    try:
        answer = asyncio.run(main())
    finally:
        scorer.shutdown()
    assert answer["verdict"] in ("benign", "adversarial") and batch_sizes(metrics) == [1, 1]


def test_a_batch_stops_waiting_when_an_admitted_request_leaves_without_reaching_it(detector):
    metrics = Metrics()
    admitted = {"n": 2}  # this upload and another one, still being decoded
    scorer = Scorer(metrics, batch_size=8, batch_wait=HOUR, admitted=lambda: admitted["n"])

    async def main():
        job = asyncio.ensure_future(scorer.explain(detector, audio(1)[0], "x.wav"))
        await asyncio.sleep(0)  # queued; the batch now waits for the other request
        admitted["n"] = 1  # the other request is refused (say, unreadable audio) and leaves
        scorer.nudge()  # what the gate does when an admitted request leaves
        return await asyncio.wait_for(job, timeout=120)

    try:
        answer = asyncio.run(main())
    finally:
        scorer.shutdown()
    assert answer["verdict"] in ("benign", "adversarial") and batch_sizes(metrics) == [1, 1]


def test_a_failing_upload_fails_alone(detector, monkeypatch):
    metrics = Metrics()
    xs = audio(3)
    expected = [detector.explain(x) for x in xs]
    explain_batch = detector.explain_batch

    def fails_on_the_second(waveforms, names):
        if any(name == "x1.wav" for name in names):
            raise ConfigError("this one is bad")
        return explain_batch(waveforms, names=names)

    monkeypatch.setattr(detector, "explain_batch", fails_on_the_second)
    scorer = Scorer(metrics, batch_size=3, batch_wait=HOUR)

    async def main():
        return await asyncio.gather(*(scorer.explain(detector, x, f"x{i}.wav") for i, x in enumerate(xs)),
                                    return_exceptions=True)

    try:
        first, second, third = asyncio.run(main())
    finally:
        scorer.shutdown()
    assert isinstance(second, ConfigError) and "bad" in str(second)
    assert_same_answer(first, expected[0])
    assert_same_answer(third, expected[2])
    assert batch_sizes(metrics) == [1, 3]  # one batch, its uploads then scored one at a time


def test_limits_refuse_bad_batch_settings():
    for bad in ({"batch_size": 0}, {"batch_wait_ms": -1}, {"batch_seconds": 0}):
        with pytest.raises(ConfigError):
            Limits(**bad)


def _wav(x) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_concurrent_requests_to_the_server_share_batches_and_each_gets_its_own_verdict(detector):
    httpx = pytest.importorskip("httpx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app = create_app(detector=detector, limits=Limits(max_seconds=3.0, batch_size=4, batch_wait_ms=HOUR * 1000))
    bodies = [_wav(x) for x in audio(8)]
    answers = [None] * len(bodies)
    with ServerThread(app) as url:
        def post(i):
            answers[i] = httpx.post(url + "/v1/detect", files={"file": (f"x{i}.wav", bodies[i], "audio/wav")},
                                    timeout=120)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        metrics = httpx.get(url + "/metrics").text
    for i, r in enumerate(answers):
        assert r.status_code == 200, r.text
        alone = detector.explain(decode_upload(bodies[i], f"x{i}.wav", 16000), name=f"x{i}.wav")
        assert r.json()["score"] == pytest.approx(alone["score"], rel=1e-9, abs=1e-9)
        assert r.json()["transcript"] == alone["transcript"] and r.json()["distinct"] == alone["distinct"]
    assert "asrguard_batch_size_sum 8.0" in metrics
