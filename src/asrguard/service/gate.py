"""The gate: an ASGI middleware every request passes before the app sees it.

In order, for each HTTP request:

1. gives it an id (``X-Request-ID`` when the client sends a sane one, else a fresh one), returned
   in the response and written in its log line;
2. refuses a declared ``Content-Length`` over the body limit at once, before reading a byte (413);
3. for guarded paths (``/v1/detect``, ``/metrics``), checks the API key when keys are set (401);
4. for ``/v1/detect``, refuses beyond ``max_inflight`` admitted requests (503 + ``Retry-After``),
   so the queue is bounded, never unbounded;
5. for ``/v1/detect``, applies the per-client rate limit when one is set (429 + ``Retry-After``);
6. wraps ``receive`` so the body is counted as it streams (a chunked body is cut at the limit,
   413) and must arrive within ``body_timeout`` seconds (408): a client trickling bytes holds
   one slot for at most that long, and never delays the others.

A request refused before its body is read (401, 429, 503) has its body read and dropped first,
within the same limits, so that the client sees the answer and keeps its connection. A 413,
and any error answered with the body still unread, carries ``Connection: close``: the server
stops reading there and then instead of draining the rest. Each request ends with one structured
log line (JSON) and its metrics. ``/healthz`` and ``/`` pass steps 2-5 untouched.

Example:
    >>> app = Gate(fastapi_app, limits=Limits(), metrics=Metrics())          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from typing import Callable

from ..errors import AsrguardError
from .access import ApiKeys, RateLimiter, presented_key
from .errors import BodyTimeoutError, OverloadedError, PayloadTooLargeError, RateLimitedError, UnauthorizedError
from .errors import UploadError
from .limits import Limits
from .metrics import Metrics

access_log = logging.getLogger("asrguard.service.access")

DETECT_PATH = "/v1/detect"
GUARDED_PATHS = (DETECT_PATH, "/metrics")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def error_body(exc: AsrguardError) -> bytes:
    return json.dumps({"error": str(exc), "code": exc.code}).encode("utf-8")


class Gate:
    """Pure ASGI middleware enforcing the limits before and while a body is read (see the module)."""

    def __init__(self, app, *, limits: Limits, metrics: Metrics, api_keys: ApiKeys | None = None,
                 rate_limiter: RateLimiter | None = None, on_release: Callable[[], None] | None = None):
        self.app = app
        self.on_release = on_release  # called whenever an admitted request leaves
        self.limits = limits
        self.metrics = metrics
        self.api_keys = api_keys
        self.rate_limiter = rate_limiter
        self.inflight = 0
        self._mean_seconds = 1.0  # running mean of /v1/detect latency, for Retry-After

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        record = {"id": request_id, "method": scope.get("method"), "path": scope.get("path")}
        if scope.get("client"):
            record["client"] = scope["client"][0]
        state = scope.setdefault("state", {})
        state["request_id"], state["log"] = request_id, record
        body = {"done": scope.get("method") in ("GET", "HEAD", "OPTIONS")
                or headers.get("content-length") == "0", "bytes": 0}
        response = {"status": None}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                extra = [(b"x-request-id", request_id.encode())]
                if message["status"] >= 400 and not body["done"]:
                    extra.append((b"connection", b"close"))  # the rest of the body will not be read
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        path = scope.get("path", "")
        admitted = False
        try:
            self._check_declared_length(headers)  # first: a huge body is refused without reading any of it
            client = self._check_access(path, headers, record)
            if path == DETECT_PATH:
                if self.inflight >= self.limits.max_inflight:
                    raise OverloadedError(f"{self.inflight} requests in flight, the most this server takes; retry "
                                          "later", retry_after=self._mean_seconds)
                if self.rate_limiter is not None:
                    wait = self.rate_limiter.acquire(client)
                    if wait > 0:
                        raise RateLimitedError(f"over the rate limit of {self.rate_limiter.per_minute:g} requests "
                                               "a minute; retry later", retry_after=wait)
                admitted = True
                self.inflight += 1
                self.metrics.inflight.set(self.inflight)
            await self.app(scope, self._limited_receive(receive, body), send_wrapper)
        except AsrguardError as exc:
            if response["status"] is not None:
                raise
            self.metrics.refused.labels(exc.code).inc()
            if exc.status != 413 and not body["done"]:
                # a refused client's connection stays usable if its (bounded) body is read first;
                # answering mid-upload would reset the connection under the client's feet
                await self._drain(self._limited_receive(receive, body))
            await self._send_error(send_wrapper, exc)
        finally:
            seconds = time.perf_counter() - start
            if admitted:
                self.inflight -= 1
                self.metrics.inflight.set(self.inflight)
                self._mean_seconds += 0.1 * (seconds - self._mean_seconds)
                if self.on_release is not None:
                    self.on_release()
            status = response["status"] or 500
            self.metrics.observe_request(path, status, seconds)
            record.update(status=status, ms=round(1000 * seconds, 1), bytes_in=body["bytes"])
            access_log.info(json.dumps(record, ensure_ascii=False, default=str))

    def _check_access(self, path: str, headers: dict, record: dict) -> str:
        """The client's name for rate limiting; raises 401 on a missing or wrong key."""
        client = record.get("client", "unknown")
        if self.api_keys is not None and path in GUARDED_PATHS:
            key = presented_key(headers)
            if not self.api_keys.check(key):
                raise UnauthorizedError("missing or wrong API key; send 'Authorization: Bearer KEY'" if key is None
                                        else "wrong API key")
            client = self.api_keys.client_id(key)
            record["key"] = client
        return client

    def _check_declared_length(self, headers: dict) -> None:
        declared = headers.get("content-length")
        if declared is None:
            return
        if not declared.isdigit():
            raise UploadError(f"invalid Content-Length header {declared[:40]!r}")
        if int(declared) > self.limits.max_body_bytes:
            raise PayloadTooLargeError(f"upload is {int(declared)} bytes, over the limit of {self.limits.max_bytes} "
                                       "bytes; send shorter audio")

    def _limited_receive(self, receive, body: dict):
        limit, timeout = self.limits.max_body_bytes, self.limits.body_timeout
        deadline = asyncio.get_running_loop().time() + timeout

        async def limited():
            if body["done"]:
                return await receive()  # body read: later calls only wait for a disconnect
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                if remaining <= 0:
                    raise asyncio.TimeoutError
                message = await asyncio.wait_for(receive(), remaining)
            except asyncio.TimeoutError:
                raise BodyTimeoutError(f"the request body did not arrive within {timeout:g} s; the connection is "
                                       "too slow") from None
            if message["type"] == "http.request":
                body["bytes"] += len(message.get("body", b""))
                if body["bytes"] > limit:
                    raise PayloadTooLargeError(f"upload is over the limit of {self.limits.max_bytes} bytes")
                if not message.get("more_body", False):
                    body["done"] = True
            return message

        return limited

    @staticmethod
    async def _drain(receive) -> None:
        """Read and drop the rest of a body, within the body limit and deadline."""
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
        except AsrguardError:
            return  # over the limit or too slow: the answer will close the connection instead

    @staticmethod
    async def _send_error(send, exc: AsrguardError) -> None:
        payload = error_body(exc)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        headers += [(k.lower().encode("latin-1"), str(v).encode("latin-1"))
                    for k, v in getattr(exc, "headers", {}).items()]
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


__all__ = ["DETECT_PATH", "GUARDED_PATHS", "Gate", "error_body"]
