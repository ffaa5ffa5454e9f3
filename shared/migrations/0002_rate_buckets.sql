-- Token buckets shared by every replica of a service (shared.ratelimit.PostgresRateLimiter): a
-- provider's rate limit is per credential, whichever process makes the call. One row per key
-- (e.g. "x:<tenant>"); `tokens` may go below zero, a debt the next callers wait off.
CREATE TABLE rate_buckets (
    key    text PRIMARY KEY,
    tokens double precision NOT NULL,
    at     timestamptz NOT NULL
);
