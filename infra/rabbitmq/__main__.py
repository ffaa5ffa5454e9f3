"""python -m infra.rabbitmq [--check]: writes (or checks) infra/rabbitmq/definitions.json."""

from __future__ import annotations

import argparse
import sys

from infra.rabbitmq import DEFINITIONS, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.rabbitmq", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not DEFINITIONS.is_file() or DEFINITIONS.read_text() != text:
            print(f"{DEFINITIONS} is stale: run `python -m infra.rabbitmq`", file=sys.stderr)
            return 1
        print(f"{DEFINITIONS} matches the code")
        return 0
    DEFINITIONS.write_text(text)
    print(f"wrote {DEFINITIONS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
