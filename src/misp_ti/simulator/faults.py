"""Fault plans: which restSearch requests fail, and how.

Grammar (``misp-ti simulator --faults`` and ``MispSimulator(faults=...)``)::

    plan  := rule ("," rule)*
    rule  := KIND ":" RATE        a fraction 0..1 of restSearch requests, drawn from the seeded RNG
           | KIND "@" N ("+" N)*  exactly the N-th restSearch request(s), 1-based
    KIND  := 429 | 500 | 502 | 503 | timeout | reset | truncate | html | shape

Scheduled rules win over rates; rate rules are tried in the order written,
one random draw per rule and request, so a plan with a seed gives the same
faults for the same request sequence.

What each kind does:

* ``429`` — MISP's rate-limit answer: JSON ``{"name": "Rate limit exceeded.", …}``
  with ``X-Rate-Limit-Limit``, ``X-Rate-Limit-Remaining: 0``,
  ``X-Rate-Limit-Reset`` (seconds until the window resets, as MISP's
  RateLimitComponent sends) and ``Retry-After`` (same seconds; a proxy's addition);
* ``500`` — MISP's internal-error JSON ``{"name": "An Internal Error Has Occurred.", …}``;
* ``502``/``503`` — a reverse proxy's HTML error page;
* ``html`` — status 500 with an HTML page (PHP/Apache error page) instead of JSON;
* ``timeout`` — the answer comes only after ``timeout_delay`` seconds (set it
  longer than the client's timeout);
* ``reset`` — the connection is closed (TCP RST) without any response;
* ``truncate`` — 200 with the first half of the real JSON body, the
  ``Content-Length`` matching the cut body (so the HTTP layer succeeds and the JSON fails);
* ``shape`` — 200 with valid JSON of the wrong shape (the other endpoint's shape).
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field

__all__ = ["FaultPlan", "FaultPlanError", "FAULT_KINDS"]

FAULT_KINDS = ("429", "500", "502", "503", "timeout", "reset", "truncate", "html", "shape")
_RULE = re.compile(
    r"^\s*(?P<kind>[a-z0-9]+)\s*(?:(?::\s*(?P<rate>[0-9.]+))|(?:@\s*(?P<at>[0-9+\s]+)))\s*$"
)


class FaultPlanError(ValueError):
    """A fault-plan string that does not follow the grammar."""


@dataclass
class FaultPlan:
    """Parsed fault plan; ``pick(n)`` says which fault (or None) the n-th restSearch request gets."""

    rates: list[tuple[str, float]] = field(default_factory=list)
    schedule: dict[int, str] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(f"misp-sim-faults-{self.seed}")
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, spec: str | None, seed: int = 0) -> FaultPlan:
        plan = cls(seed=seed)
        for raw in (spec or "").split(","):
            if not raw.strip():
                continue
            match = _RULE.match(raw)
            if not match:
                raise FaultPlanError(
                    f"fault rule {raw.strip()!r}: expected KIND:RATE or KIND@N (kinds: {', '.join(FAULT_KINDS)})"
                )
            kind = match["kind"]
            if kind not in FAULT_KINDS:
                raise FaultPlanError(
                    f"fault rule {raw.strip()!r}: unknown kind {kind!r} (kinds: {', '.join(FAULT_KINDS)})"
                )
            if match["rate"] is not None:
                try:
                    rate = float(match["rate"])
                except ValueError:
                    rate = -1.0
                if not 0.0 <= rate <= 1.0:
                    raise FaultPlanError(
                        f"fault rule {raw.strip()!r}: rate must be a fraction between 0 and 1"
                    )
                plan.rates.append((kind, rate))
            else:
                for number in match["at"].split("+"):
                    if not number.strip().isdigit() or int(number) < 1:
                        raise FaultPlanError(
                            f"fault rule {raw.strip()!r}: request numbers start at 1"
                        )
                    if int(number) in plan.schedule:
                        raise FaultPlanError(
                            f"fault rule {raw.strip()!r}: request {int(number)} already has a fault"
                        )
                    plan.schedule[int(number)] = kind
        return plan

    def pick(self, number: int) -> str | None:
        with self._lock:
            scheduled = self.schedule.get(number)
            draws = [
                (kind, self._rng.random() < rate) for kind, rate in self.rates
            ]  # always draw: stays deterministic
        if scheduled:
            return scheduled
        for kind, hit in draws:
            if hit:
                return kind
        return None

    def __str__(self) -> str:
        parts = [f"{k}:{r:g}" for k, r in self.rates] + [
            f"{k}@{n}" for n, k in sorted(self.schedule.items())
        ]
        return ",".join(parts)
