"""``python -m simulator --scenario FILE [--port N] [--ca-out FILE]``: run in the foreground."""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import threading

from . import Simulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    parser.add_argument("--scenario", required=True, help="scenario JSON file (see simulator/README.md)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--ca-out", help="also copy the CA certificate PEM to this file")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each request (never secrets or tokens)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s")
    try:
        sim = Simulator(args.scenario, port=args.port)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with sim:
        ca_path = sim.ca_path
        if args.ca_out:
            shutil.copyfile(sim.ca_path, args.ca_out)
            ca_path = args.ca_out
        print(f"URL {sim.url}", flush=True)
        print(f"CA  {ca_path}", flush=True)
        print("Graph base URL  " + sim.graph_url, flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
