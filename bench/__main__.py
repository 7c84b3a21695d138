"""`python -m bench engine|gateway [--quick] [--no-record]`."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("engine", "gateway"):
        print("usage: python -m bench engine|gateway [--quick] [--no-record]", file=sys.stderr)
        return 2
    if argv[0] == "engine":
        from bench.engine import main as engine_main

        return engine_main(argv)
    from bench.gateway import main as gateway_main

    return gateway_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
