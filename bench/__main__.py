"""`python -m bench` runs every benchmark; `python -m bench resolve` or `python -m bench bulk
--contacts 100000` runs one. `python -m bench --help` lists the options."""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench import bulk_import, campaigns, enrichment, resolve, segments
from bench.common import BenchError, GunicornSettings, Line, report, say, table

BENCHMARKS = {"resolve": resolve, "bulk": bulk_import, "enrichment": enrichment, "segments": segments,
              "campaigns": campaigns}


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    main.add_argument("--workers", type=int, help="gunicorn workers (default: gunicorn.conf.py's)")
    main.add_argument("--threads", type=int, help="threads per gunicorn worker (default: gunicorn.conf.py's)")
    main.add_argument("--worker-class", help="gunicorn worker class (default: gunicorn.conf.py's)")
    main.add_argument("--gunicorn-arg", action="append", default=[], metavar="FLAG",
                      help="another gunicorn flag for both apps, e.g. --gunicorn-arg=--worker-connections=16")
    main.add_argument("--profile", action="store_true",
                      help="sample the gunicorn workers with py-spy during the measured phases "
                           "(flame graphs in bench/results/profiles/; slows the figures down)")
    sub = main.add_subparsers(dest="benchmark")
    for name, module in BENCHMARKS.items():
        module.add_arguments(sub.add_parser(name, help=(module.__doc__ or "").splitlines()[0]))
    return main


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    settings = GunicornSettings(workers=args.workers, worker_class=args.worker_class, threads=args.threads,
                                extra=tuple(args.gunicorn_arg))
    chosen = [args.benchmark] if args.benchmark else list(BENCHMARKS)
    everything: list[Line] = []
    for name in chosen:
        module = BENCHMARKS[name]
        if args.benchmark is None:  # `python -m bench`: each benchmark with its defaults
            module.add_arguments(sub := argparse.ArgumentParser())
            options = sub.parse_args([])
            options.profile = args.profile
        else:
            options = args
        say(f"== {name}: {settings.describe()}")
        started = time.perf_counter()
        load_before = os.getloadavg()
        try:
            lines, meta = module.run(options, settings)
        except BenchError as exc:
            print(f"{name} failed: {exc}", file=sys.stderr)
            return 1
        meta["wall_seconds"] = round(time.perf_counter() - started, 1)
        # Other work on the machine skews the figures: a load average well above the core count
        # means the run shared the CPUs.
        meta["load_average_before_after"] = f"{load_before[0]:.1f} / {os.getloadavg()[0]:.1f}"
        path = report(name, lines, meta)
        say(f"{name} done in {meta['wall_seconds']:.0f} s; results in {path}")
        everything += lines
    if len(chosen) > 1:
        print(table(everything))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
