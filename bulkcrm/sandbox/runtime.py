"""What happens around each API request: key check, rate window, faults, request log.

Stage: sandbox. Input: a raw `Request` from the HTTP server. Output: the `Response` of the app,
or of the gateway itself (401, 429, injected 5xx), possibly marked to be dropped, and one
`LoggedRequest` per request (crm-api.md §2, §4; test faults per the sandbox brief).
"""
from __future__ import annotations

import math
import random
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from email.utils import formatdate

from .app import App
from .wire import HttpError, Request, Response, problem, unauthorized

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Faults:
    """Injected faults (tests only). Shares are probabilities in [0, 1] per request.

    Attributes:
        latency_ms: extra delay before answering (milliseconds), on top of the sandbox's own.
        error_rate: share of authenticated requests answered with one of `error_statuses`
            before anything is written.
        error_statuses: 5xx statuses to pick from (uniformly).
        drop_rate: share of write requests (POST/PUT/PATCH/DELETE) that are processed and
            committed, after which the connection is closed without an answer.
        burst_429: the next N authenticated requests get 429 with `Retry-After: 1`
            (they are not counted in the rate window).
        retry_after_http_date: send `Retry-After` as an HTTP-date (RFC 9110 §10.2.3).
        seed: seed of the random draws (None: unseeded).
    """

    latency_ms: int = 0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503)
    drop_rate: float = 0.0
    burst_429: int = 0
    retry_after_http_date: bool = False
    seed: int | None = None

    @classmethod
    def from_dict(cls, data: dict) -> "Faults":
        """Build from JSON (control interface). Raises ValueError on unknown fields."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        if "error_statuses" in data:
            data = {**data, "error_statuses": tuple(int(s) for s in data["error_statuses"])}
        return cls(**data)

    def to_dict(self) -> dict:
        return {**asdict(self), "error_statuses": list(self.error_statuses)}


@dataclass(frozen=True)
class LoggedRequest:
    """One API request as the sandbox saw it.

    Attributes:
        method, path (no query), query (raw query string), status (the answer's status; for a
        dropped request the status that was not sent), tenant (None when the key was refused),
        time (arrival, epoch seconds), dropped (connection closed without an answer).
    """

    method: str
    path: str
    query: str
    status: int
    tenant: str | None
    time: float
    dropped: bool = False


class RateLimiter:
    """Sliding window per tenant (crm-api.md §4): `limit` requests per `window_s` seconds."""

    def __init__(self, limit: int | None = None, window_s: float = 60.0):
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self.configure(limit, window_s)

    def configure(self, limit: int | None, window_s: float = 60.0) -> None:
        if limit is not None and (limit < 1 or window_s <= 0):
            raise ValueError("rate limit needs limit >= 1 and window_s > 0")
        with self._lock:
            self.limit, self.window_s = limit, float(window_s)

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()

    def hit(self, tenant: str, now: float) -> int | None:
        """Count a request arriving at `now` (monotonic seconds). Returns None when allowed,
        else the whole seconds until the oldest counted request leaves the window (>= 1)."""
        with self._lock:
            if self.limit is None:
                return None
            hits = self._hits[tenant]
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(1, math.ceil(hits[0] + self.window_s - now))
            hits.append(now)
            return None


class Gateway:
    """Runs one API request through auth, rate window, faults and the app, and logs it.

    Args:
        app: the routes. api_keys: key -> tenant. limiter: the shared rate window.
        latency_ms: constant delay added to every API answer (milliseconds).

    Attributes:
        on_request: called with each `LoggedRequest` as it is logged (`bulkcrm sandbox --log`),
            or None.
    """

    def __init__(self, app: App, api_keys: dict[str, str], limiter: RateLimiter,
                 latency_ms: int = 0):
        self.app, self.api_keys, self.limiter, self.latency_ms = app, api_keys, limiter, latency_ms
        self._lock = threading.Lock()
        self.log: list[LoggedRequest] = []
        self.on_request: Callable[[LoggedRequest], None] | None = None
        self.set_faults(Faults())

    # -- faults ------------------------------------------------------------------------------

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults, self._burst_left = faults, faults.burst_429
            self._rng = random.Random(faults.seed)

    @property
    def faults(self) -> Faults:
        with self._lock:
            return replace(self._faults, burst_429=self._burst_left)

    def _draw(self, share: float) -> bool:
        with self._lock:
            return share > 0 and self._rng.random() < share

    # -- pipeline ----------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        arrival, now = time.time(), time.monotonic()
        key = req.headers.get("x-api-key")
        tenant = self.api_keys.get(key) if key is not None else None
        if tenant is None:
            resp = unauthorized("API key not found." if key is None else "Invalid API key.")
            return self._logged(req, resp, None, arrival)
        req = replace(req, tenant=tenant)
        wait = self._burst()
        if wait is None:
            wait = self.limiter.hit(tenant, now)
        if wait is not None:
            return self._logged(req, self._too_many(wait), tenant, arrival)
        delay_ms = self.latency_ms + self._faults.latency_ms
        if delay_ms > 0:
            time.sleep(delay_ms / 1000)
        if self._draw(self._faults.error_rate):
            with self._lock:
                status = self._rng.choice(self._faults.error_statuses)
            return self._logged(req, problem(HttpError(status)), tenant, arrival)
        resp = self.app.handle(req)
        if req.method in WRITE_METHODS and self._draw(self._faults.drop_rate):
            resp.drop = True
        return self._logged(req, resp, tenant, arrival)

    def _burst(self) -> int | None:
        with self._lock:
            if self._burst_left <= 0:
                return None
            self._burst_left -= 1
            return 1

    def _too_many(self, wait_s: int) -> Response:
        """429 problem document with `Retry-After` (seconds, or HTTP-date when asked)."""
        value = str(wait_s)
        if self._faults.retry_after_http_date:
            value = formatdate(math.ceil(time.time()) + wait_s, usegmt=True)
        return problem(HttpError(429, "Too Many Requests", headers=[("Retry-After", value)]))

    def _logged(self, req: Request, resp: Response, tenant: str | None, arrival: float) -> Response:
        entry = LoggedRequest(req.method, req.path, req.query, resp.status, tenant, arrival,
                              resp.drop)
        with self._lock:
            self.log.append(entry)
        if self.on_request is not None:
            self.on_request(entry)
        return resp

    def entries(self) -> list[LoggedRequest]:
        """A copy of the log, oldest first (taken under the lock: requests keep arriving)."""
        with self._lock:
            return list(self.log)

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()
