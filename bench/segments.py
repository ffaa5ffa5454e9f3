"""segments: GET /v1/segments/{id}/preview over 1,000,000 contacts, rule shape by rule shape,
against the same count run directly in PostgreSQL.

identity runs too (campaigns asks it about API keys); campaigns under gunicorn with the same
settings. Fixture: the audience is campaigns' projection of identity's and enrichment's events;
it is written here with one SQL `INSERT ... SELECT generate_series` (plus consents for a part of
it), then ANALYZEd: feeding a million contacts through identity, enrichment and the bus would take
many minutes and is not what is measured. The distributions are realistic rather than uniform
(30 % of contacts in France, 60 % with a birth date and 20 % with only an age range, a long tail
of influence tiers, 30 % with a check-in around a few cities), so that the planner sees the
selectivities a real tenant has.

Each shape is one segment created through POST /v1/segments; its preview (count + sample of 10)
is asked `--runs` times after 3 warm-up calls, alternating with the raw line: the compiled count
(`SELECT count(*) ... WHERE <the same expression>`, same parameters) on one connection of its
own, so that other work on the shared machine falls on both alike. The preview also fetches its
sample of 10 (a second subquery in the same statement). Rate: calls per second of one client;
p50/p99 per call; CPU per preview (the PostgreSQL figure counts the parallel workers' too, when
the plan uses them, only partly: their processes end with each query).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import psycopg
import requests
from psycopg import sql

from bench.common import (
    BenchError,
    CpuMeter,
    GunicornSettings,
    Line,
    Server,
    compare,
    create_tenant,
    expect,
    fresh_database,
    profiled,
    say,
    serve,
    server_urls,
    service_env,
)
from services.campaigns.segments import compile_rules

IDENTITY_APP = "services.identity.app:create_app()"
CAMPAIGNS_APP = "services.campaigns.app:create_app()"
WARMUP = 3

# name -> rules: the headline 3-condition segment first.
SHAPES: dict[str, dict[str, Any]] = {
    "FR, age 30-40, tennis": {"all": [
        {"field": "country", "op": "eq", "value": "FR"},
        {"field": "age", "op": "between", "value": [30, 40]},
        {"field": "interests", "op": "contains", "value": "tennis"},
    ]},
    "city Lyon (any case)": {"all": [{"field": "city", "op": "eq", "value": "lyon"}]},
    "tier >= micro or satisfaction >= 80, in DE/ES/IT": {"all": [
        {"field": "country", "op": "in", "value": ["DE", "ES", "IT"]},
        {"any": [{"field": "influence.tier", "op": "gte", "value": "micro"},
                 {"field": "engagement.satisfaction", "op": "gte", "value": 80}]},
    ]},
    "email granted, purchase within 90 days": {"all": [
        {"field": "consent.email_marketing", "op": "eq", "value": "granted"},
        {"field": "last_purchase_at", "op": "within_days", "value": 90},
    ]},
    "near Paris 10 km, check-in within 30 days": {"all": [
        {"field": "last_checkin_at", "op": "near", "value": {"lat": 48.8566, "lon": 2.3522, "km": 10}},
        {"field": "last_checkin_at", "op": "within_days", "value": 30},
    ]},
    "attributes: vip, lifetime_value >= 4000": {"all": [
        {"field": "attributes.segment", "op": "eq", "value": "vip"},
        {"field": "attributes.lifetime_value", "op": "gte", "value": 4000},
    ]},
    "whole audience": {"all": []},
}

# The fixture. random() is seeded first, so every run has the same audience.
SEED_AUDIENCE = """
INSERT INTO campaigns.audience (tenant_id, contact_id, contact_version, email, first_name, attributes,
    birth_date, last_purchase_at, age_min, age_max, city, country, profession, interests, demographics_at,
    influence_tier, influence_score, influence_at, sentiment, satisfaction, engagement_at,
    last_checkin_at, last_checkin_place, last_checkin_lat, last_checkin_lon, geolocation_at)
SELECT %(tenant)s, gen_random_uuid(), now(), 'c' || n || '@example.com', 'C' || n,
       jsonb_build_object('segment', (ARRAY['prospect', 'customer', 'vip', 'churned', 'partner'])[1 + n %% 5],
                          'lifetime_value', (n * 37) %% 5000),
       CASE WHEN r.age_known < 0.6 THEN current_date - (18 * 365 + floor(r.age * 62 * 365))::int END,
       CASE WHEN r.buyer < 0.5 THEN now() - r.purchase * interval '730 days' END,
       CASE WHEN r.age_known BETWEEN 0.6 AND 0.8 THEN bucket.low END,
       CASE WHEN r.age_known BETWEEN 0.6 AND 0.8 THEN bucket.high END,
       CASE WHEN r.demo < 0.9 THEN place.city END,
       CASE WHEN r.demo < 0.9 THEN place.country END,
       CASE WHEN r.demo < 0.9 THEN (ARRAY['engineer', 'teacher', 'nurse', 'designer', 'sales manager', 'student',
                                         'lawyer', 'chef', 'photographer', 'retired'])[1 + (n * 7) %% 10] END,
       ARRAY(SELECT i FROM unnest(ARRAY['tennis', 'running', 'cooking', 'travel', 'fashion', 'music', 'cinema',
                                        'football', 'yoga', 'photography', 'gaming', 'wine', 'cycling',
                                        'reading', 'hiking', 'skiing', 'golf', 'art', 'tech', 'gardening'])
                  WITH ORDINALITY AS t(i, k)
             WHERE (hashint4((n * 31 + k)::int) & 1023) < 1024 * (0.05 + 0.10 * (k %% 2))),
       now() - interval '10 days',
       tier.name, tier.score, now() - interval '10 days',
       CASE WHEN r.engaged < 0.5 THEN round((r.sentiment * 2 - 1)::numeric, 2) END,
       CASE WHEN r.engaged < 0.5 THEN round((r.satisfaction * 100)::numeric, 1) END,
       now() - interval '10 days',
       CASE WHEN r.checkin < 0.3 THEN now() - r.when_ * interval '120 days' END,
       CASE WHEN r.checkin < 0.3 THEN place.city END,
       CASE WHEN r.checkin < 0.3 THEN place.lat + (r.dlat - 0.5) * 0.4 END,
       CASE WHEN r.checkin < 0.3 THEN place.lon + (r.dlon - 0.5) * 0.6 END,
       now() - interval '10 days'
FROM generate_series(1, %(count)s) AS n
CROSS JOIN LATERAL (SELECT random() AS age_known, random() AS age, random() AS buyer, random() AS purchase,
                           random() AS demo, random() AS where_, random() AS tier_, random() AS engaged,
                           random() AS sentiment, random() AS satisfaction, random() AS checkin,
                           random() AS when_, random() AS dlat, random() AS dlon, random() AS bucket_,
                           n AS row_number) AS r
CROSS JOIN LATERAL (SELECT * FROM (VALUES
        (0.00, 0.15, 'Paris', 'FR', 48.8566, 2.3522), (0.15, 0.22, 'Lyon', 'FR', 45.7640, 4.8357),
        (0.22, 0.26, 'Marseille', 'FR', 43.2965, 5.3698), (0.26, 0.30, 'Bordeaux', 'FR', 44.8378, -0.5792),
        (0.30, 0.42, 'New York', 'US', 40.7128, -74.0060), (0.42, 0.50, 'San Francisco', 'US', 37.7749, -122.4194),
        (0.50, 0.62, 'London', 'GB', 51.5074, -0.1278), (0.62, 0.72, 'Berlin', 'DE', 52.5200, 13.4050),
        (0.72, 0.80, 'Madrid', 'ES', 40.4168, -3.7038), (0.80, 0.87, 'Milan', 'IT', 45.4642, 9.1900),
        (0.87, 0.92, 'Tokyo', 'JP', 35.6762, 139.6503), (0.92, 0.96, 'São Paulo', 'BR', -23.5505, -46.6333),
        (0.96, 0.98, 'Montréal', 'CA', 45.5019, -73.5674), (0.98, 1.01, 'Brussels', 'BE', 50.8503, 4.3517)
    ) AS p(low, high, city, country, lat, lon) WHERE r.where_ >= p.low AND r.where_ < p.high) AS place
CROSS JOIN LATERAL (SELECT * FROM (VALUES (18, 24), (25, 34), (35, 44), (45, 54), (55, 64), (65, NULL))
                    AS b(low, high) OFFSET floor(r.bucket_ * 6)::int LIMIT 1) AS bucket
CROSS JOIN LATERAL (SELECT CASE WHEN r.tier_ < 0.60 THEN 'none' WHEN r.tier_ < 0.85 THEN 'nano'
                                WHEN r.tier_ < 0.95 THEN 'micro' WHEN r.tier_ < 0.99 THEN 'macro'
                                ELSE 'mega' END AS name,
                           round((r.tier_ * 100)::numeric, 1)::real AS score) AS tier
"""
# Consents for a part of the audience: half granted email (a tenth of those expired since),
# 5 % withdrawn, a quarter granted SMS.
SEED_CONSENTS = """
INSERT INTO campaigns.audience_consents (tenant_id, contact_id, purpose, status, record_id, captured_at, expires_at)
SELECT a.tenant_id, a.contact_id, p.purpose,
       CASE WHEN p.purpose = 'email_marketing' AND r.x >= 0.50 THEN 'withdrawn' ELSE 'granted' END,
       gen_random_uuid(), now() - interval '200 days',
       CASE WHEN r.x < 0.05 THEN now() - interval '1 day' END
FROM campaigns.audience a
CROSS JOIN LATERAL (SELECT random() AS x, a.contact_id) AS r  -- per row: it names a column of a
CROSS JOIN LATERAL (VALUES ('email_marketing'), ('sms_marketing')) AS p(purpose)
WHERE a.tenant_id = %(tenant)s
  AND ((p.purpose = 'email_marketing' AND r.x < 0.55) OR (p.purpose = 'sms_marketing' AND r.x < 0.25))
"""


def seed_audience(database_url: str, tenant_id: str, count: int) -> float:
    """The fixture, ANALYZEd; returns the seconds it took."""
    started = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT setseed(0.42)")
        conn.execute(SEED_AUDIENCE, {"tenant": tenant_id, "count": count})
        conn.execute(SEED_CONSENTS, {"tenant": tenant_id})
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE campaigns.audience")
        conn.execute("VACUUM ANALYZE campaigns.audience_consents")
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_both(campaigns: Server, key: str, segment_id: str, database_url: str, tenant_id: str,
              rules: dict[str, Any], runs: int) -> tuple[list[float], list[float], dict[str, Any], int]:
    """The preview through the API and the count alone in PostgreSQL, alternately (a burst of
    other work on the shared machine falls on both alike); returns both latencies, the API's
    last answer and the raw count."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    url = f"{campaigns.url}/v1/segments/{segment_id}/preview"
    members = compile_rules(rules, tenant_id)
    query = sql.SQL("SELECT count(*) FROM campaigns.audience a WHERE {}").format(members.where)
    answer: dict[str, Any] = {}
    api, raw = [], []
    counted = 0
    with psycopg.connect(database_url, autocommit=True, application_name="bench_raw") as conn:
        for i in range(WARMUP + runs):
            t0 = time.perf_counter()
            response = session.get(url, timeout=60)
            elapsed = time.perf_counter() - t0
            expect(response, 200)
            answer = response.json()
            t0 = time.perf_counter()
            counted = conn.execute(query, members.params, prepare=False).fetchone()[0]  # as the API
            raw_elapsed = time.perf_counter() - t0
            if i >= WARMUP:
                api.append(elapsed)
                raw.append(raw_elapsed)
    return api, raw, answer, counted


def explain(database_url: str, tenant_id: str, rules: dict[str, Any]) -> str:
    """The plan of the count, for the results file."""
    members = compile_rules(rules, tenant_id)
    query = sql.SQL("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) SELECT count(*)"
                    " FROM campaigns.audience a WHERE {}").format(members.where)
    with psycopg.connect(database_url, autocommit=True) as conn:
        return "\n".join(r[0] for r in conn.execute(query, members.params).fetchall())


def line_of(what: str, latencies: list[float], cpu: tuple[float, float] | None = None) -> Line:
    seconds = sum(latencies)
    line = Line(what, len(latencies) / seconds, "calls/s", p50_ms=statistics.median(latencies) * 1000,
                p99_ms=percentile(latencies, 0.99) * 1000)
    if cpu is not None:
        line.cpu_us = cpu[0] / len(latencies) * 1e6
        line.pg_cpu_us = cpu[1] / len(latencies) * 1e6
    return line


def run(args: argparse.Namespace, settings: GunicornSettings) -> tuple[list[Line], dict[str, Any]]:
    server_url, broker_url = server_urls()
    lines: list[Line] = []
    plans: dict[str, str] = {}
    counts: dict[str, int] = {}
    with fresh_database(server_url) as database_url:
        env = service_env(database_url, broker_url)
        with serve(IDENTITY_APP, env, settings, "identity") as identity:
            tenant_id, key = create_tenant(identity)
            env["IDENTITY_URL"] = identity.url
            with serve(CAMPAIGNS_APP, env, settings, "campaigns") as campaigns:
                say(f"seeding {args.contacts:,} audience rows")
                seeded = seed_audience(database_url, tenant_id, args.contacts)
                say(f"seeded in {seeded:.1f} s")
                headers = {"Authorization": f"Bearer {key}"}
                for name, rules in SHAPES.items():
                    response = requests.post(campaigns.url + "/v1/segments", json={"name": name, "rules": rules},
                                             headers=headers, timeout=10)
                    expect(response, 201)
                    segment_id = response.json()["id"]
                    meter = CpuMeter(campaigns, database_url, "campaigns")
                    meter.start()
                    with profiled(campaigns, f"segments-{len(lines)}", args.profile):
                        api, raw, answer, counted = time_both(campaigns, key, segment_id, database_url, tenant_id,
                                                              rules, args.runs)
                    api_line = line_of(f"campaigns GET /v1/segments/{{id}}/preview: {name}", api, meter.stop())
                    raw_line = line_of(f"PostgreSQL alone: the count of {name}", raw)
                    if counted != answer["count"]:
                        raise BenchError(f"{name}: the API counted {answer['count']}, PostgreSQL {counted}")
                    counts[name] = counted
                    plans[name] = explain(database_url, tenant_id, rules)
                    api_line.details = {"count": counted, "sample": len(answer["sample"])}
                    compare(api_line, raw_line)
                    if not lines:
                        api_line.target, api_line.met = "p99 < 1,000 ms", api_line.p99_ms < 1000
                    say(f"{name}: {counted:,} contacts, p50 {api_line.p50_ms:.1f} ms (raw {raw_line.p50_ms:.1f} ms)")
                    lines += [api_line, raw_line]
                first = requests.get(campaigns.url + "/v1/segments", headers=headers, timeout=10).json()["items"][-1]
                analytics = []
                for _ in range(WARMUP + args.runs // 3):
                    t0 = time.perf_counter()
                    response = requests.get(f"{campaigns.url}/v1/segments/{first['id']}/analytics", headers=headers,
                                            timeout=60)
                    analytics.append(time.perf_counter() - t0)
                    expect(response, 200)
                lines.append(line_of(f"campaigns GET /v1/segments/{{id}}/analytics: {first['name']}",
                                     analytics[WARMUP:]))
    meta = {"gunicorn": settings.describe(), "contacts": args.contacts, "runs": args.runs, "counts": counts,
            "plans": plans, "fixture": "campaigns.audience seeded with SQL INSERT ... SELECT generate_series",
            "seed_seconds": round(seeded, 1)}
    return lines, meta


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=1_000_000, help="audience rows to seed")
    parser.add_argument("--runs", type=int, default=30, help="previews per rule shape (after 3 warm-up calls)")
