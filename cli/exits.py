"""Exit codes scripts can rely on (also in `liaison --help` and docs/cli.md)."""

OK = 0
API_ERROR = 1          # the API refused the request (problem+json shown), or the input is unusable
USAGE = 2              # a wrong command line (typer/click's own code)
UNREACHABLE = 3        # a service or the broker cannot be reached (or answered 502/503/504)
TIMED_OUT = 4          # --wait/--follow gave up after --timeout
AUDIT_INVALID = 5      # audit verify: the chain is broken
ROWS_REJECTED = 6      # an import went to the end but some rows were rejected (see the errors file)
CAMPAIGN_CANCELLED = 7  # campaigns follow: the campaign ended cancelled, not completed
INTERRUPTED = 130      # Ctrl-C; an import keeps its checkpoint

EPILOG = (
    "Exit codes: 0 ok; 1 the API refused the request (problem shown) or bad input; 2 usage error; "
    "3 a service or the broker cannot be reached; 4 a wait timed out; 5 the audit chain is broken; "
    "6 an import finished but rejected some rows; 7 the followed campaign was cancelled; 130 interrupted."
)
