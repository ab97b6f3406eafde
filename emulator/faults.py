"""Fault injection: what goes wrong, how often, decided from seeded random sources.

``FaultConfig`` is the setting (``EmulatorConfig.faults``); ``FaultInjector`` makes the
decisions. The HTTP layer (``responses.EcsApi.endpoint``) applies the per-call faults to every
signed ECS and EVS call (not to SMN, nor to ``/_emulator/``); the job engine
(``models.EcsBackend``) applies the job faults at submission. The default injects nothing.

A configuration, as JSON (every field optional)::

    {
      "seed": 7,
      "latency_s": 0.05, "jitter_s": 0.02,
      "rate_limit": {"rate": 10, "burst": 20, "per_access_key": false},
      "errors": [{"rate": 0.3, "status": 503, "code": "APIG.0201", "methods": ["DELETE"],
                  "paths": "/detachvolume/", "message": null, "retry_after_s": null,
                  "after_commit": false}],
      "hangs": [{"rate": 0.1, "seconds": 30, "after_commit": false}],
      "drops": [{"rate": 0.05, "after_commit": true}],
      "job_failure": {"rate": 0.2, "error_code": "Ecs.1000", "fail_reason": "Nova backend timeout"},
      "settle_lag_s": {"kind": "uniform", "min": 1, "max": 5}
    }

Per call, in this order:

1. Latency: every call waits ``latency_s`` plus a uniform draw from ``[0, jitter_s]``. Then the
   signature is checked: a refused call is answered 401 and nothing below applies.
2. Rate limit: a token bucket (``rate`` per second, ``burst`` tokens, default ``ceil(rate)``),
   one for all calls or one per access key. A call finding no token is answered 429
   ``APIGW.0308`` (``policy user over ratelimit,limit:N,time:1 second``) with ``Retry-After``:
   the whole seconds until the next token, at least 1.
3. Rules: of the ``drops``, ``hangs`` and ``errors`` (tried in that order) whose ``methods``
   (any, if null) and ``paths`` (a regular expression searched in the URL path; any, if null)
   match the call, one uniform draw picks at most one: the first rule whose cumulative ``rate``
   exceeds the draw. Rates of matching rules that add up to more than 1 starve the later ones.

   - ``errors``: answer ``status`` with a body in the shape of ``code``'s family: the gateway's
     (``APIGW.*``, ``APIG.*``), ECS's (any other code), or, with no code, a plain-text body (a
     429 without a code is ``APIGW.0308``). ``message`` defaults to the code's usual text or the
     status phrase. 429 answers carry ``Retry-After`` (``retry_after_s``, default 1); other
     statuses carry it only when ``retry_after_s`` is set.
   - ``hangs``: hold the call ``seconds``, then answer it normally. If the client closes the
     connection meanwhile, the call is given up and never reaches ECS.
   - ``drops``: close the connection without answering a byte (the client reads
     "Server disconnected without sending a response").

   Without ``after_commit`` the call never reaches ECS: an injected error or drop on a detach
   starts no job. With ``after_commit: true`` ECS performs the call first (a detach starts its
   job) and only then is the answer replaced by the error, withheld for the hang, or dropped:
   the ambiguous case where a client cannot know whether its call took effect.

Per detach job, at submission (a volume's own fault, ``PATCH /_emulator/volumes/{id}``, wins):

- ``job_failure``: with this rate the job ends ``FAIL`` with the code and reason, disk attached.
- ``settle_lag_s``: a job that succeeds reports ``SUCCESS`` while the disk stays in the server's
  block devices and EVS shows it attached and ``detaching``, for this long; then it is gone.

Durations (``settle_lag_s`` here, ``job_duration_s`` in ``EmulatorConfig``) are seconds or a
distribution drawn per job: ``{"kind": "uniform", "min": 2, "max": 30}`` or ``{"kind":
"lognormal", "median": 10, "sigma": 0.5, "max": 600}`` (capped at ``max``).

``seed`` makes every draw repeatable; null draws a fresh seed. Calls, latency and jobs draw from
separate streams, so adding jitter does not change which calls fail. Replacing the faults or
``POST /_emulator/reset`` restarts the draws and refills the rate-limit buckets.

``GET /_emulator/calls`` keeps every attempt with its ``fault`` (``error``, ``hang``, ``drop``,
``rate_limit``, the first three also ``…_after_commit``; null for none), ``reached_backend``
(false when ECS did not perform the call) and ``status`` (0 when nothing was answered); its
``summary`` counts them. Dropping a connection aborts uvicorn's socket: it needs the emulator
served by uvicorn, as ``ecs-detach`` and the tests do.

Set at start with ``EmulatorConfig(faults=...)`` or the environment (``faults_from_env``):
``ECS_EMULATOR_FAULTS`` holds the JSON above. At run time: ``GET``/``PUT``/``DELETE
/_emulator/faults`` (show, replace, reset to none).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_VAR = "ECS_EMULATOR_FAULTS"
RATE_LIMIT_CODE = "APIGW.0308"
DEFAULT_FAIL_CODE = "Ecs.1000"
DEFAULT_FAIL_REASON = "Nova backend timeout"
# The usual messages of gateway codes; others default to the status phrase.
CODE_MESSAGES = {"APIG.0201": "Backend timeout.", "APIG.0202": "Backend unavailable."}

Clock = Callable[[], float]
Rate = Annotated[float, Field(ge=0, le=1)]
Seconds = Annotated[float, Field(ge=0)]


def status_phrase(status: int) -> str:
    """``Service Unavailable`` for 503; ``Error`` for a status without a name."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Uniform(_Model):
    """Seconds drawn uniformly from ``[min, max]``."""

    kind: Literal["uniform"]
    min: Seconds
    max: Seconds

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class LogNormal(_Model):
    """Seconds drawn log-normally around ``median`` (``sigma`` of the log), capped at ``max``."""

    kind: Literal["lognormal"]
    median: float = Field(gt=0)
    sigma: float = Field(ge=0)
    max: float = Field(default=600.0, gt=0)


Distribution = Annotated[Uniform | LogNormal, Field(discriminator="kind")]
Duration = Seconds | Distribution


def sample(duration: Duration, rng: random.Random) -> float:
    """One draw of ``duration`` (a number is itself)."""
    if isinstance(duration, Uniform):
        return rng.uniform(duration.min, duration.max)
    if isinstance(duration, LogNormal):
        return min(duration.max, rng.lognormvariate(math.log(duration.median), duration.sigma))
    return duration


class _Rule(_Model):
    """Which calls a rule applies to, how often, and whether ECS performs the call first."""

    kind: ClassVar[str]

    rate: Rate
    methods: tuple[str, ...] | None = None
    paths: str | None = None
    after_commit: bool = False

    @field_validator("methods")
    @classmethod
    def _upper(cls, methods: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if methods is None else tuple(m.upper() for m in methods)

    @field_validator("paths")
    @classmethod
    def _regex(cls, paths: str | None) -> str | None:
        if paths is not None:
            try:
                re.compile(paths)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return paths

    def matches(self, method: str, path: str) -> bool:
        """The call's method and path are in scope."""
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return self.paths is None or re.search(self.paths, path) is not None

    @property
    def label(self) -> str:
        """The fault kind as the call ledger names it: ``error``, ``hang_after_commit``…"""
        return f"{self.kind}_after_commit" if self.after_commit else self.kind


class ErrorRule(_Rule):
    """Answer an error instead of (or, after commit, in place of) ECS's answer."""

    kind: ClassVar[str] = "error"

    status: int = Field(ge=400, le=599)
    code: str | None = None
    message: str | None = None
    retry_after_s: int | None = Field(default=None, ge=0)

    @property
    def error_code(self) -> str | None:
        """The code answered: ``code``, or ``APIGW.0308`` for a 429 without one."""
        if self.code is None and self.status == 429:
            return RATE_LIMIT_CODE
        return self.code

    def text(self, rate_limit: RateLimit | None) -> str:
        """``message``, else the code's usual text (``APIGW.0308``: the rate limit's, at 1 per
        second if none is set), else the status phrase."""
        if self.message is not None:
            return self.message
        code = self.error_code
        if code == RATE_LIMIT_CODE:
            return (rate_limit or RateLimit(rate=1)).message()
        return CODE_MESSAGES.get(code or "") or status_phrase(self.status)

    @property
    def retry_after(self) -> int | None:
        """The ``Retry-After`` seconds: ``retry_after_s``, or 1 on a 429."""
        if self.retry_after_s is None and self.status == 429:
            return 1
        return self.retry_after_s


class HangRule(_Rule):
    """Hold the call ``seconds`` before answering."""

    kind: ClassVar[str] = "hang"

    seconds: float = Field(gt=0)


class DropRule(_Rule):
    """Close the connection without an answer."""

    kind: ClassVar[str] = "drop"


CallFault = ErrorRule | HangRule | DropRule


class RateLimit(_Model):
    """A token bucket: ``rate`` calls per second, ``burst`` at once (default ``ceil(rate)``)."""

    rate: float = Field(gt=0)
    burst: int | None = Field(default=None, ge=1)
    per_access_key: bool = False

    @property
    def capacity(self) -> int:
        """The bucket's size."""
        return self.burst if self.burst is not None else math.ceil(self.rate)

    def message(self) -> str:
        """The gateway's text for a refused call."""
        limit = int(self.rate) if self.rate.is_integer() else self.rate
        return f"policy user over ratelimit,limit:{limit},time:1 second"


class JobFailureRule(_Model):
    """A share of detach jobs that end ``FAIL`` with this code and reason."""

    rate: Rate
    error_code: str = Field(default=DEFAULT_FAIL_CODE, min_length=1)
    fail_reason: str = DEFAULT_FAIL_REASON


class FaultConfig(_Model):
    """Everything the emulator injects; the default injects nothing (see the module docs)."""

    seed: int | None = None
    latency_s: Seconds = 0.0
    jitter_s: Seconds = 0.0
    rate_limit: RateLimit | None = None
    errors: tuple[ErrorRule, ...] = ()
    hangs: tuple[HangRule, ...] = ()
    drops: tuple[DropRule, ...] = ()
    job_failure: JobFailureRule | None = None
    settle_lag_s: Duration = 0.0


class FaultConfigError(ValueError):
    """A fault configuration that cannot be read; the message says where and why."""


def describe_errors(error: ValidationError) -> str:
    """``field.path: message`` for each problem, joined by ``; ``."""
    parts = []
    for detail in error.errors(include_url=False):
        location = ".".join(str(part) for part in detail["loc"])
        parts.append(f"{location}: {detail['msg']}" if location else str(detail["msg"]))
    return "; ".join(parts)


def faults_from_env(environ: Mapping[str, str] | None = None) -> FaultConfig:
    """The ``ECS_EMULATOR_FAULTS`` JSON as a ``FaultConfig``; unset or blank is no faults.

    Raises ``FaultConfigError`` naming the variable and what is wrong."""
    env = os.environ if environ is None else environ
    text = env.get(ENV_VAR, "").strip()
    if not text:
        return FaultConfig()
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise FaultConfigError(f"{ENV_VAR} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FaultConfigError(f"{ENV_VAR} must be a JSON object")
    try:
        return FaultConfig.model_validate(data)
    except ValidationError as exc:
        raise FaultConfigError(f"{ENV_VAR}: {describe_errors(exc)}") from None


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass(frozen=True)
class Throttled:
    """A call the rate limit refuses: the gateway's message and ``Retry-After`` seconds."""

    message: str
    retry_after_s: int


class FaultInjector:
    """The decisions for one ``FaultConfig``: seeded random streams and the rate-limit buckets.

    Thread-safe; a new injector starts the streams and fills the buckets afresh."""

    def __init__(self, config: FaultConfig, clock: Clock) -> None:
        seed = config.seed if config.seed is not None else random.SystemRandom().getrandbits(64)
        self.config = config
        self._clock = clock
        self._calls = random.Random(f"{seed}/calls")  # noqa: S311 - test data, not secrets
        self._latency = random.Random(f"{seed}/latency")  # noqa: S311
        self._jobs = random.Random(f"{seed}/jobs")  # noqa: S311
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def latency(self) -> float:
        """Seconds to add to this call."""
        config = self.config
        if config.jitter_s == 0:
            return config.latency_s
        with self._lock:
            return config.latency_s + self._latency.uniform(0, config.jitter_s)

    def throttle(self, access_key: str) -> Throttled | None:
        """None if the call may pass, else how the gateway refuses it."""
        limit = self.config.rate_limit
        if limit is None:
            return None
        key = access_key if limit.per_access_key else ""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.setdefault(key, _Bucket(float(limit.capacity), now))
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(float(limit.capacity), bucket.tokens + elapsed * limit.rate)
            bucket.at = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return None
            wait = (1 - bucket.tokens) / limit.rate
        return Throttled(limit.message(), max(1, math.ceil(wait)))

    def pick(self, method: str, path: str) -> CallFault | None:
        """The rule to apply to this call, if any (one draw per call with a matching rule)."""
        config = self.config
        candidates: list[CallFault] = [*config.drops, *config.hangs]
        candidates.extend(config.errors)
        rules = [rule for rule in candidates if rule.matches(method, path)]
        if not rules:
            return None
        with self._lock:
            draw = self._calls.random()
        cumulative = 0.0
        for rule in rules:
            cumulative += rule.rate
            if draw < cumulative:
                return rule
        return None

    def job_duration(self, duration: Duration) -> float:
        """One draw of a job's duration."""
        with self._lock:
            return sample(duration, self._jobs)

    def job_failure(self) -> JobFailureRule | None:
        """The failure a new detach job ends with, if it is to fail."""
        rule = self.config.job_failure
        if rule is None:
            return None
        with self._lock:
            return rule if self._jobs.random() < rule.rate else None

    def settle_lag(self) -> float:
        """How long a new successful detach leaves the disk listed after ``SUCCESS``."""
        with self._lock:
            return sample(self.config.settle_lag_s, self._jobs)
