"""The provider sandbox: stand-ins for the outside services Liaison calls, on this machine.

It answers the enrichment adapters' endpoints (X API v2 user lookup, the Graph API's Instagram
business discovery and Facebook Page lookup, FullContact Person Enrich) in the real providers'
request and response shapes, with synthetic data that is stable per handle: the same handle
always gets the same person, and any handle gets one. So the whole enrichment flow runs on a
laptop with no internet and no provider accounts, for development, demos and benchmarks.

Conventions a demo or a test can rely on:

- a handle (or an email's local part) starting with `unknown` (`unknown_42`) is answered in the
  provider's own not-found shape;
- a token starting with `invalid` or `expired` is refused in the provider's own way, as is a
  missing one;
- `SANDBOX_LATENCY_MS` adds that many milliseconds to every answer.

Never point a production deployment at it: every answer is made up.

    gunicorn 'sandbox.app:create_app()'   (`make run` starts it on SANDBOX_URL, :8009 by default)
"""
