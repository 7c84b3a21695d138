"""The garbage collector of a gateway process, settled once its app is built.

CPython's cyclic collector walks every container object of a generation it collects. A built
gateway holds some 100,000 of them (modules, schemas, the app) that live as long as the process;
left in the oldest generation, each full collection walks them all again, and the default
young-generation threshold (700 allocations) makes a collection every few requests. Frozen,
they are never walked again (they are still freed by reference counting), and a larger
young-generation threshold collects the short-lived objects of requests less often for the
same work per collection. Numbers: docs/decisions.md ("The garbage collector of a gateway
process").

Only for a process that is the gateway (`tram serve`, its workers, `tram up`): a test run's
or a benchmark's own heap is not frozen.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "settle"]

YOUNG_THRESHOLD = 7000  # allocations between collections of the youngest generation


def settle() -> None:
    """Collect what start-up left behind, freeze what remains, and raise the young threshold."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
