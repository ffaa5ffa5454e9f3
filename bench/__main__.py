"""`python -m bench` runs every benchmark and writes bench/results/summary.md and summary.json
(each README figure beside its raw limit, measured in the same run); `python -m bench resolve` or
`python -m bench bulk --contacts 100000` runs one. `python -m bench --quick` runs every benchmark
at small sizes, to check the harness in a few minutes. `python -m bench --help` lists the options."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

import psycopg
import requests

from bench import bulk_import, campaigns, enrichment, resolve, segments, webhooks
from bench.common import ROOT, BenchError, GunicornSettings, Line, report, say, server_urls, table
from bench.summary import LoadSampler, Run, write

BENCHMARKS = {"resolve": resolve, "bulk": bulk_import, "enrichment": enrichment, "segments": segments,
              "campaigns": campaigns, "webhooks": webhooks}

# --quick: sizes that exercise every phase of each benchmark in a minute or so; what they measure
# is too small and too short to quote.
QUICK = {
    "resolve": ["--handles", "5000", "--api-links", "200", "--duration", "4", "--rounds", "2", "--warmup", "1"],
    "bulk": ["--contacts", "20000", "--batch", "2000", "--relay-seconds", "5", "--publish-messages", "5000"],
    "enrichment": ["--events", "5000", "--contacts", "1000", "--jobs", "100", "--round-trip-messages", "2000"],
    "segments": ["--contacts", "50000", "--runs", "5"],
    "campaigns": ["--recipients", "20000", "--sms", "300", "--raw-sms", "200", "--emails", "1000",
                  "--raw-emails", "300", "--round-trip-messages", "200", "--checkins", "5", "--raw-samples", "30"],
    "webhooks": ["--events", "3000", "--raw-messages", "2000", "--raw-transactions", "1000", "--deliveries", "1000",
                 "--raw-requests", "1000", "--paced-events", "60"],
}


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
    main.add_argument("--quick", action="store_true",
                      help="small sizes, to check that the harness works (a few minutes); options given after "
                           "a benchmark's name still win. The figures are labelled quick: do not quote them")
    sub = main.add_subparsers(dest="benchmark")
    for name, module in BENCHMARKS.items():
        module.add_arguments(sub.add_parser(name, help=(module.__doc__ or "").splitlines()[0]))
    return main


def parse(argv: list[str]) -> argparse.Namespace:
    args = parser().parse_args(argv)
    if args.quick and args.benchmark:
        # The quick sizes go right after the benchmark's name, so that options the user gave win.
        at = argv.index(args.benchmark) + 1
        args = parser().parse_args(argv[:at] + QUICK[args.benchmark] + argv[at:])
    return args


def options_of(name: str, args: argparse.Namespace) -> argparse.Namespace:
    """The options of benchmark `name`: those given to it, or, when the whole suite runs, its
    defaults (its quick sizes with --quick)."""
    if args.benchmark is not None:
        return args
    sub = argparse.ArgumentParser()
    BENCHMARKS[name].add_arguments(sub)
    options = sub.parse_args(QUICK[name] if args.quick else [])
    options.profile = args.profile
    return options


def main(argv: list[str]) -> int:
    args = parse(argv)
    settings = GunicornSettings(workers=args.workers, worker_class=args.worker_class, threads=args.threads,
                                extra=tuple(args.gunicorn_arg))
    chosen = [args.benchmark] if args.benchmark else list(BENCHMARKS)
    suite = args.benchmark is None
    started_at = datetime.now(UTC)
    runs: list[Run] = []
    for name in chosen:
        options = options_of(name, args)
        say(f"== {name}{' (quick)' if args.quick else ''}: {settings.describe()}")
        started = time.perf_counter()
        lines: list[Line] = []
        meta: dict[str, Any] = {}
        error = None
        with LoadSampler() as load:
            try:
                lines, meta = BENCHMARKS[name].run(options, settings)
            except BenchError as exc:
                error = str(exc)
            except (requests.RequestException, psycopg.Error, OSError, subprocess.SubprocessError) as exc:
                traceback.print_exc()  # not a check of ours that failed: the trace says where
                error = f"{exc.__class__.__name__}: {exc}"
        wall = round(time.perf_counter() - started, 1)
        run = Run(name, {k: v for k, v in vars(options).items() if k != "benchmark"}, lines, meta, wall,
                  load.before, load.peak, load.after, error=error)
        runs.append(run)
        if error is not None:
            print(f"{name} failed after {wall:.0f} s: {error}", file=sys.stderr)
            if not suite:
                return 1
            continue  # the suite goes on: one failure must not cost the other benchmarks' figures
        meta["quick"] = args.quick
        meta["wall_seconds"] = wall
        # Other work on the machine skews the figures: a load average well above the core count
        # means the run shared the CPUs.
        meta["load_average_before_peak_after"] = f"{load.before:.1f} / {load.peak:.1f} / {load.after:.1f}"
        path = report(name, lines, meta)
        run.results_file = str(path.relative_to(ROOT))
        say(f"{name} done in {wall:.0f} s; results in {path}")
    if len(chosen) > 1:
        print(table([line for run in runs for line in run.lines]))
    if suite:
        database_url, broker_url = server_urls()
        path = write(runs, args.quick, args.profile, settings.describe(), started_at, database_url, broker_url)
        say(f"summary: {path} and {path.with_suffix('.json')}")
    return 1 if any(run.error for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
