"""Load test of ``asrguard serve`` on loopback, with and without request batching, in one run.

Starts the service (shipped detector) twice in a subprocess on 127.0.0.1 at a free port: first
with ``--batch-size 1`` (every upload scored alone), then with ``--batch-size B`` (default 8)
and ``--batch-wait-ms W``; against each it runs C concurrent clients × R requests of a 2 s clip
with asyncio + httpx in this process. A client answered 503 (the service's in-flight bound, a
deliberate refusal) waits ``Retry-After`` (at most 2 s) and tries again, up to ``--attempts``
times per request. Bounded in count (at most clients × requests × attempts requests per server)
and in time (``--time-limit`` seconds of load per server).

Prints, per server: requests answered 200, deliberate 503s, other errors, requests given up
after ``--attempts`` 503s; p50 / p95 / p99 latency of the 200s (seconds, each from first attempt
to answer); throughput (200s per second of load); the server's CPU time per answer (ms, all its
threads; it includes answering the 503s); the batch sizes the server reports
(``asrguard_batch_size``); the slowest ``/healthz``
seen by a probe (its own process) every 0.25 s during load (ms); the server's RSS at idle after
one request, at its peak (VmHWM) and 6 s after each round of load (MB); the load average before
and after. Then the ratio of the batched server's throughput to the unbatched one's.

    python benchmarks/service.py --json                       # 50 clients × 10 requests, both servers
    python benchmarks/service.py --clients 8 --requests 5     # a quick look
    python benchmarks/service.py --json --only-batched --clients 40 --requests 1 --clip-seconds 29 --rounds 4 \
        --max-inflight 40                                     # memory after four bursts of long uploads
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        else:  # every attempt answered 503
            stats["gave_up"] += 1


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
    stats = {"latencies": [], "errors": [], "overloaded_503": 0, "unfinished": 0, "gave_up": 0}
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
            "gave_up_after_503s": stats["gave_up"],
            "p50_s": percentile(lat, 50), "p95_s": percentile(lat, 95), "p99_s": percentile(lat, 99),
            "throughput_per_s": len(lat) / elapsed, "load_seconds": elapsed,
            "healthz_worst_ms": 1000 * health["worst"], "healthz_probes": health["n"]}


def batch_sizes(url: str) -> dict:
    """Batches the server scored and the uploads in them, from its metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("asrguard_batch_size_") and not line.startswith("asrguard_batch_size_bucket")}
    batches, uploads = values.get("asrguard_batch_size_count", 0.0), values.get("asrguard_batch_size_sum", 0.0)
    return {"batches": int(batches), "mean_batch_size": uploads / batches if batches else float("nan")}


def load_average() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(v) for v in f.read().split()[:3]]


def serve_and_load(args, body: bytes, batch_size: int) -> dict:
    """Start a server with ``batch_size``, run ``args.rounds`` rounds of load against it, stop it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "asrguard.cli", "serve", "--host", "127.0.0.1", "--port",
                               str(port), "--max-inflight", str(args.max_inflight), "--batch-size", str(batch_size),
                               "--batch-wait-ms", str(args.batch_wait_ms)],
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
        before = load_average()
        rounds = []
        for _ in range(args.rounds):
            cpu = cpu_seconds(server.pid)
            rounds.append(asyncio.run(load(url, body, args)))
            # CPU the server spent per answer: batching can only pay where it lowers this, or where cores sit idle
            rounds[-1]["server_cpu_ms_per_ok"] = 1000 * (cpu_seconds(server.pid) - cpu) / max(1, rounds[-1]["ok"])
            time.sleep(6.0)  # once idle, the server trims its heap within 5 s
            rounds[-1]["rss_after_mb"] = rss_mb(server.pid)
        result = rounds[0] if args.rounds == 1 else {"rounds": rounds}
        result.update(batch_size=batch_size, batch_wait_ms=args.batch_wait_ms, **batch_sizes(url), rss_idle_mb=idle,
                      rss_peak_mb=rss_mb(server.pid, "VmHWM"), load_average_before=before,
                      load_average_after=load_average())
        return result
    finally:
        server.terminate()
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            server.kill()


def throughput(result: dict) -> float:
    rounds = result.get("rounds", [result])
    return sum(r["ok"] for r in rounds) / sum(r["load_seconds"] for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=10, help="requests per client")
    parser.add_argument("--attempts", type=int, default=20, help="tries per request when answered 503")
    parser.add_argument("--max-inflight", type=int, default=16, help="the server's in-flight bound")
    parser.add_argument("--batch-size", type=int, default=8, help="the batched server's --batch-size")
    parser.add_argument("--batch-wait-ms", type=float, default=20.0, help="the batched server's --batch-wait-ms")
    parser.add_argument("--only-batched", action="store_true", help="skip the unbatched server")
    parser.add_argument("--time-limit", type=float, default=180.0, help="seconds of load at most, per server")
    parser.add_argument("--clip-seconds", type=float, default=2.0, help="length of the clip sent")
    parser.add_argument("--rounds", type=int, default=1, help="bursts in a row (RSS is read after each)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (1 <= args.clients <= 200 and 1 <= args.requests <= 100 and 1 <= args.attempts <= 100
            and 1 <= args.rounds <= 10 and 0.5 <= args.clip_seconds <= 30 and 1 <= args.batch_size <= 64):
        parser.error("keep it bounded: clients <= 200, requests <= 100, attempts <= 100, rounds <= 10, clip <= 30 s, "
                     "batch size <= 64")

    buf = io.BytesIO()
    sf.write(buf, two_second_utterance(16000, args.clip_seconds), 16000, format="WAV", subtype="PCM_16")
    body = buf.getvalue()
    result = {"clip_seconds": args.clip_seconds, "cpu_count": os.cpu_count()}
    if not args.only_batched:
        result["unbatched"] = serve_and_load(args, body, 1)
    result["batched"] = serve_and_load(args, body, args.batch_size)
    if not args.only_batched:
        result["throughput_ratio"] = throughput(result["batched"]) / throughput(result["unbatched"])
    if args.json:
        print(json.dumps(result))
        return
    for name in ("unbatched", "batched"):
        if name in result:
            print(f"--- {name}")
            print_result(result.pop(name), False)
    print_result(result, False)


if __name__ == "__main__":
    main()
