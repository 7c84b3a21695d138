"""UTC time stamps for usage events, cheaply.

Every request's usage event and journal line carry a stamp in one form,
`datetime.now(UTC).isoformat(timespec="microseconds")` ("2026-12-02T02:56:59.123456+00:00"),
which `store/usage/rows.py` slices into SQLite's form without parsing. Building a datetime and
formatting it twice per request was measurable (docs/decisions.md); the date and time of
day change once a second, so they are formatted once a second and only the microseconds per
call.
"""

from __future__ import annotations

import time

__all__ = ["utc_stamp"]


class _SecondCache:
    __slots__ = ("prefix", "second")

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def stamp(self) -> str:
        second, nanos = divmod(time.time_ns(), 1_000_000_000)
        if second != self.second:
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self.second = second
        return f"{self.prefix}.{nanos // 1000:06d}+00:00"


utc_stamp = _SecondCache().stamp
