"""`python -m bench engine|gateway [--quick] [--no-record]`, `python -m bench inprocess`,
`python -m bench compare [--base REV]`, `python -m bench images`, `python -m bench routes`,
`python -m bench fleet`, `python -m bench fleetsim`, `python -m bench fairness`,
`python -m bench routing`, `python -m bench floors`, `python -m bench pipelining`,
`python -m bench batches`, `python -m bench context`, `python -m bench instructions`."""

from __future__ import annotations

import importlib
import sys

# Each command's module and whether its `main` takes the command's own name too.
_COMMANDS = {"engine": ("bench.engine", True), "gateway": ("bench.gateway", False),
             "inprocess": ("bench.inprocess", False), "compare": ("bench.compare", False),
             "images": ("bench.images", False), "routes": ("bench.routes", False),
             "fleet": ("bench.fleet", False), "fleetsim": ("bench.fleetsim", False),
             "fairness": ("bench.fairness", False), "routing": ("bench.routing_cost", False),
             "floors": ("bench.floors", False), "pipelining": ("bench.pipelining", False),
             "batches": ("bench.batches", False), "context": ("bench.context", False),
             "instructions": ("bench.instructions", False)}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in _COMMANDS:
        print("usage: python -m bench engine|gateway [--quick] [--no-record]\n"
              "       python -m bench inprocess [--requests N] [--concurrency C]\n"
              "       python -m bench compare [--base REV] [--rounds R] [--seconds S] [--streams N]\n"
              "       python -m bench images [--seconds S]\n"
              "       python -m bench routes [--rounds R] [--seconds S]\n"
              "       python -m bench fleet [--replicas N] [--seconds S] [--speed X] [--quick]\n"
              "       python -m bench fleetsim [--workloads W] [--seeds S] [--evidence]\n"
              "       python -m bench fairness [--scenario flood|keys] [--real] [--fair-queue]\n"
              "       python -m bench routing [--replicas N] [--prefixes P]\n"
              "       python -m bench floors [--seconds S] [--rounds R]\n"
              "       python -m bench pipelining [--tree DIR] [--scale F] [--no-record]\n"
              "       python -m bench batches [--lines N] [--big N] [--database URL]\n"
              "       python -m bench context [--rounds R] [--tokens N] [--contexts 4096,8192]\n"
              "       python -m bench instructions [--base REV] [--reps R] [--requests 100,700]",
              file=sys.stderr)
        return 2
    module, with_name = _COMMANDS[argv[0]]
    command_main = importlib.import_module(module).main  # imported only when asked for
    result: int = command_main(argv if with_name else argv[1:])
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
