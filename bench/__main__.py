"""`python -m bench engine [--quick]`: see bench/engine.py."""

from __future__ import annotations

import sys

from bench.engine import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
