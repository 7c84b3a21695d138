"""`python -m bench engine|gateway [--quick] [--no-record]`, `python -m bench inprocess`,
`python -m bench compare [--base REV]`, `python -m bench images`, `python -m bench routes`."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("engine", "gateway", "inprocess", "compare", "images",
                                        "routes", "fleet", "routing", "floors"):
        print("usage: python -m bench engine|gateway [--quick] [--no-record]\n"
              "       python -m bench inprocess [--requests N] [--concurrency C]\n"
              "       python -m bench compare [--base REV] [--rounds R] [--seconds S]\n"
              "       python -m bench images [--seconds S]\n"
              "       python -m bench routes [--rounds R] [--seconds S]\n"
              "       python -m bench fleet [--replicas N] [--seconds S] [--speed X] [--quick]\n"
              "       python -m bench routing [--replicas N] [--prefixes P]\n"
              "       python -m bench floors [--seconds S] [--rounds R]",
              file=sys.stderr)
        return 2
    if argv[0] == "floors":
        from bench.floors import main as floors_main

        return floors_main(argv[1:])
    if argv[0] == "routing":
        from bench.routing_cost import main as routing_main

        return routing_main(argv[1:])
    if argv[0] == "fleet":
        from bench.fleet import main as fleet_main

        return fleet_main(argv[1:])
    if argv[0] == "routes":
        from bench.routes import main as routes_main

        return routes_main(argv[1:])
    if argv[0] == "images":
        from bench.images import main as images_main

        return images_main(argv[1:])
    if argv[0] == "compare":
        from bench.compare import main as compare_main

        return compare_main(argv[1:])
    if argv[0] == "inprocess":
        from bench.inprocess import main as inprocess_main

        return inprocess_main(argv[1:])
    if argv[0] == "engine":
        from bench.engine import main as engine_main

        return engine_main(argv)
    from bench.gateway import main as gateway_main

    return gateway_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
