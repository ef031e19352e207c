"""Load test of ``asrguard serve`` on loopback: C concurrent clients × R requests of a 2 s clip.

Starts the service (shipped detector) in a subprocess on 127.0.0.1 at a free port, waits for
``/healthz``, then runs the clients with asyncio + httpx in this process. A client answered
503 (the service's in-flight bound, a deliberate refusal) waits ``Retry-After`` (at most 2 s)
and tries again, up to ``--attempts`` times per request. Bounded in count (at most
clients × requests × attempts requests) and in time (``--time-limit`` seconds for the load).

Prints: requests answered 200, deliberate 503s, other errors; p50 / p95 / p99 latency of the
200s (seconds, each from first attempt to answer); throughput (200s per second of load);
the slowest ``/healthz`` seen by a probe (its own process) every 0.25 s during load (ms); the server's RSS at
idle after one request, at its peak (VmHWM) and 6 s after each round of load (MB).

Concurrent requests are not batched: the recogniser offers no multi-utterance realisation
pass yet (see ``docs/service.md``), so there is no with/without-batching comparison here.

    python benchmarks/service.py --json                       # 50 clients × 10 requests
    python benchmarks/service.py --clients 8 --requests 5     # a quick look
    python benchmarks/service.py --json --clients 40 --requests 1 --clip-seconds 29 --rounds 4 --max-inflight 40
                                                              # memory after four bursts of long uploads
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np
import soundfile as sf

from _timing import print_result
from detect import two_second_utterance


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field + ":"))


def percentile(values, q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def client(http, url, body, n_requests, attempts, stats, stop_at):
    for _ in range(n_requests):
        start = time.perf_counter()
        for _ in range(attempts):
            if time.monotonic() > stop_at:
                stats["unfinished"] += 1
                return
            try:
                r = await http.post(url + "/v1/detect", files={"file": ("clip.wav", body, "audio/wav")})
            except httpx.HTTPError as exc:
                stats["errors"].append(type(exc).__name__)
                break
            if r.status_code == 503:
                stats["overloaded_503"] += 1
                await asyncio.sleep(min(2.0, float(r.headers.get("retry-after", "1"))))
                continue
            if r.status_code == 200:
                stats["latencies"].append(time.perf_counter() - start)
            else:
                stats["errors"].append(r.status_code)
            break


# the health probe runs in a process of its own, as an orchestrator's would: in this one it would
# measure the clients' own event loop as much as the server
PROBE = """
import json, sys, time, httpx
url, stop_file, worst, n = sys.argv[1], sys.argv[2], 0.0, 0
deadline = time.monotonic() + float(sys.argv[3])
with httpx.Client(timeout=10) as http:
    while time.monotonic() < deadline:
        try:
            open(stop_file).close()
            break
        except OSError:
            pass
        start = time.perf_counter()
        http.get(url + "/healthz").raise_for_status()
        worst, n = max(worst, time.perf_counter() - start), n + 1
        time.sleep(0.25)
print(json.dumps({"worst": worst, "n": n}))
"""


async def load(url, body, args) -> dict:
    stats = {"latencies": [], "errors": [], "overloaded_503": 0, "unfinished": 0}
    limits = httpx.Limits(max_connections=args.clients + 4, max_keepalive_connections=args.clients + 4)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        stop_file = os.path.join(tempfile.mkdtemp(prefix="asrguard-bench-"), "stop")
        probe = subprocess.Popen([sys.executable, "-c", PROBE, url, stop_file, str(args.time_limit + 10)],
                                 stdout=subprocess.PIPE, text=True)
        start = time.perf_counter()
        stop_at = time.monotonic() + args.time_limit
        await asyncio.gather(*(client(http, url, body, args.requests, args.attempts, stats, stop_at)
                               for _ in range(args.clients)))
        elapsed = time.perf_counter() - start
        open(stop_file, "w").close()
        health = json.loads(probe.communicate(timeout=30)[0])
    lat = stats["latencies"]
    return {"clients": args.clients, "requests_per_client": args.requests, "ok": len(lat),
            "overloaded_503": stats["overloaded_503"], "errors": len(stats["errors"]),
            "error_kinds": sorted({str(e) for e in stats["errors"]}), "unfinished": stats["unfinished"],
            "p50_s": percentile(lat, 50), "p95_s": percentile(lat, 95), "p99_s": percentile(lat, 99),
            "throughput_per_s": len(lat) / elapsed, "load_seconds": elapsed,
            "healthz_worst_ms": 1000 * health["worst"], "healthz_probes": health["n"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=10, help="requests per client")
    parser.add_argument("--attempts", type=int, default=20, help="tries per request when answered 503")
    parser.add_argument("--max-inflight", type=int, default=16, help="the server's in-flight bound")
    parser.add_argument("--time-limit", type=float, default=180.0, help="seconds of load at most")
    parser.add_argument("--clip-seconds", type=float, default=2.0, help="length of the clip sent")
    parser.add_argument("--rounds", type=int, default=1, help="bursts in a row (RSS is read after each)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (1 <= args.clients <= 200 and 1 <= args.requests <= 100 and 1 <= args.attempts <= 100
            and 1 <= args.rounds <= 10 and 0.5 <= args.clip_seconds <= 30):
        parser.error("keep it bounded: clients <= 200, requests <= 100, attempts <= 100, rounds <= 10, clip <= 30 s")

    buf = io.BytesIO()
    sf.write(buf, two_second_utterance(16000, args.clip_seconds), 16000, format="WAV", subtype="PCM_16")
    body = buf.getvalue()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "asrguard.cli", "serve", "--host", "127.0.0.1", "--port",
                               str(port), "--max-inflight", str(args.max_inflight)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        first = httpx.post(url + "/v1/detect", files={"file": ("clip.wav", body, "audio/wav")}, timeout=60)
        first.raise_for_status()
        idle = rss_mb(server.pid)
        rounds = []
        for _ in range(args.rounds):
            rounds.append(asyncio.run(load(url, body, args)))
            time.sleep(6.0)  # once idle, the server trims its heap within 5 s
            rounds[-1]["rss_after_mb"] = rss_mb(server.pid)
        result = rounds[0] if args.rounds == 1 else {"rounds": rounds}
        result.update(clip_seconds=args.clip_seconds, rss_idle_mb=idle, rss_peak_mb=rss_mb(server.pid, "VmHWM"),
                      batching="not implemented", cpu_count=os.cpu_count())
    finally:
        server.terminate()
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            server.kill()
    print_result(result, args.json)


if __name__ == "__main__":
    main()
