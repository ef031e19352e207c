"""Optional API keys and a per-client rate limit.

* :class:`ApiKeys` holds SHA-256 digests of the keys (one per line in ``--api-key-file``) and
  compares a presented key against every one with :func:`hmac.compare_digest`, so neither
  the key's content nor which key matched shows in the timing.
* :class:`RateLimiter` is a token bucket per client: ``N/min`` on average, bursts up to ``N``.

Example:
    >>> keys = ApiKeys(["s3cret-key-0123456789"])
    >>> keys.check("s3cret-key-0123456789"), keys.check("guess")
    (True, False)
    >>> parse_rate("120/min")
    120.0
    >>> limiter = RateLimiter(2, clock=lambda: 0.0)
    >>> [limiter.acquire("client") for _ in range(3)]
    [0.0, 0.0, 30.0]
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterable

from ..errors import ConfigError

#: Keys shorter than this are refused: they can be guessed.
MIN_KEY_LENGTH = 16


def _digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode("utf-8") if isinstance(key, str) else key).digest()


class ApiKeys:
    """A set of API keys, checked in constant time."""

    def __init__(self, keys: Iterable[str]):
        keys = [k for k in keys if k]
        if not keys:
            raise ConfigError("no API keys given")
        short = [k for k in keys if len(k) < MIN_KEY_LENGTH]
        if short:
            raise ConfigError(f"API keys must have at least {MIN_KEY_LENGTH} characters; {len(short)} are shorter")
        # comparing fixed-length digests hides the key's length too
        self._digests = [_digest(k) for k in keys]

    def __len__(self) -> int:
        return len(self._digests)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "ApiKeys":
        """Keys from a text file, one per line; blank lines and ``#`` comments are skipped."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the API key file ({exc.__class__.__name__})") from None
        keys = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
        if not keys:
            raise ConfigError(f"{path}: holds no API keys (one per line)")
        return cls(keys)

    def check(self, presented: str | None) -> bool:
        """True when ``presented`` is one of the keys; every key is compared, whatever matches."""
        given = _digest(presented or "")
        ok = False
        for digest in self._digests:
            ok |= hmac.compare_digest(digest, given)
        return ok and bool(presented)

    def client_id(self, presented: str) -> str:
        """A name for rate limiting and logs that does not reveal the key."""
        return "key:" + _digest(presented).hex()[:12]


def presented_key(headers: dict[str, str]) -> str | None:
    """The key in ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``, if any."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("x-api-key", "").strip() or None


def parse_rate(text: str) -> float:
    """Requests per minute from ``"N/min"``, ``"N/s"``, ``"N/h"`` or a bare ``"N"`` (per minute)."""
    number, _, unit = str(text).strip().partition("/")
    per = {"": 1.0, "min": 1.0, "m": 1.0, "minute": 1.0, "s": 60.0, "sec": 60.0, "second": 60.0,
           "h": 1 / 60, "hour": 1 / 60}.get(unit.strip().lower())
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if per is None or not value > 0:
        raise ConfigError(f"rate limit must look like '60/min', '2/s' or '1000/h', got {text!r}")
    return value * per


class RateLimiter:
    """Token bucket per client: ``per_minute`` requests a minute, bursts of up to ``burst``.

    :meth:`acquire` returns 0 when the request may go ahead, else the seconds to wait. At most
    ``max_clients`` buckets are kept (least recently used dropped first), so memory is bounded
    whatever the number of clients.
    """

    def __init__(self, per_minute: float, *, burst: int | None = None, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        if not per_minute > 0:
            raise ConfigError(f"rate limit must be > 0 requests a minute, got {per_minute!r}")
        self.per_minute = float(per_minute)
        self.burst = float(burst if burst is not None else max(1, int(per_minute)))
        self.max_clients = int(max_clients)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, client: str) -> float:
        now = self._clock()
        rate = self.per_minute / 60.0
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / rate
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (``127.0.0.1``, ``::1``, ``localhost``)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = ["ApiKeys", "MIN_KEY_LENGTH", "RateLimiter", "is_loopback", "parse_rate", "presented_key"]
