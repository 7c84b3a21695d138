"""Usage accounting, one concern a module:

- `writer.py`: `UsageWriter`, what the gateway calls (begin, record, flush, start, close).
- `spool.py`: events between the request and the database (journal, buffer, shedding).
- `journal.py`: this process's journal file, which survives `kill -9`.
- `recovery.py`: what dead gateway processes left in their journals.
- `rows.py`: the insert, per dialect.
- `supervision.py`: the background task (backoff, restart on a bug, stop).
- `retention.py`: deleting old rows.
- `summary.py`: the sums `tram usage` and `/admin/usage` show.
"""

from tram.store.usage.summary import usage_summary
from tram.store.usage.writer import UsageWriter

__all__ = ["UsageWriter", "usage_summary"]
