"""The garbage collector of a gateway process, settled once its app has started.

CPython's cyclic collector walks every container object of a generation it collects. Most of
a built gateway's objects (modules, schemas, the app) live as long as the process; left in the
oldest generation, each full collection walks them all again, and the default young-generation
threshold moves requests' objects up into the older generations every few dozen requests.
Frozen, the long-lived ones are never walked again (reference counting still frees them: a
reload's replaced models go, tests/test_heap.py), and a larger young threshold promotes and
collects the older generations less often. Numbers: docs/decisions.md ("The garbage collector
of a gateway process").

Only for a process that is the gateway (`create_app(..., settle_heap=True)`: `tram serve`, its
workers, `tram up`), called at the end of the app's start-up: a test run's or a benchmark's own
heap is not frozen.
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
