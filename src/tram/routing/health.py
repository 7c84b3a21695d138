"""Per-replica health: a circuit fed by real traffic (passive) and by probes (active).

    HEALTHY ──(eject_after failures in a row)──▶ OPEN ──(eject_seconds)──▶ HALF_OPEN
       ▲                                          ▲                           │
       │                                          └────(the trial fails)──────┤
       └──────(the trial succeeds, or healthy_after good probes)──────────────┘
    Any state ──(unhealthy_after failed probes in a row)──▶ DOWN ──(good probes)──▶ HEALTHY

A replica takes requests when HEALTHY, and one trial request at a time when HALF_OPEN.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from tram.config import HealthConfig

__all__ = ["CircuitState", "ReplicaHealth"]


class CircuitState(enum.Enum):
    HEALTHY = "healthy"
    OPEN = "open"
    HALF_OPEN = "half_open"
    DOWN = "down"


class ReplicaHealth:
    def __init__(self, config: HealthConfig, clock: Callable[[], float] = time.monotonic,
                 on_open: Callable[[], None] | None = None) -> None:
        self.config = config
        self.state = CircuitState.HEALTHY
        self._clock = clock
        self._on_open = on_open
        self._failures = 0
        self._open_until = 0.0
        self._trial_in_flight = False
        self._probe_failures = 0
        self._probe_successes = 0

    def admits(self) -> bool:
        """Whether a new request may be sent to this replica now."""
        if self.state is CircuitState.OPEN and self._clock() >= self._open_until:
            self.state = CircuitState.HALF_OPEN
        if self.state is CircuitState.HALF_OPEN:
            return not self._trial_in_flight
        return self.state is CircuitState.HEALTHY

    def on_chosen(self) -> None:
        if self.state is CircuitState.HALF_OPEN:
            self._trial_in_flight = True

    def record_success(self) -> None:
        self._failures = 0
        self._trial_in_flight = False
        if self.state in (CircuitState.HALF_OPEN, CircuitState.OPEN):
            self.state = CircuitState.HEALTHY

    def record_failure(self) -> None:
        """A connect error or a 5xx from this replica (passive ejection)."""
        self._failures += 1
        was_trial = self.state is CircuitState.HALF_OPEN
        self._trial_in_flight = False
        if was_trial or (self.state is CircuitState.HEALTHY
                         and self._failures >= self.config.eject_after):
            self._open()

    def record_probe(self, ok: bool) -> None:
        if ok:
            self._probe_failures = 0
            self._probe_successes += 1
            if self.state is not CircuitState.HEALTHY and \
                    self._probe_successes >= self.config.healthy_after:
                self.state = CircuitState.HEALTHY
                self._failures = 0
                self._trial_in_flight = False
        else:
            self._probe_successes = 0
            self._probe_failures += 1
            if self._probe_failures >= self.config.unhealthy_after and \
                    self.state is not CircuitState.DOWN:
                if self.state is CircuitState.HEALTHY and self._on_open:
                    self._on_open()
                self.state = CircuitState.DOWN

    def _open(self) -> None:
        self.state = CircuitState.OPEN
        self._open_until = self._clock() + self.config.eject_seconds
        if self._on_open is not None:
            self._on_open()
