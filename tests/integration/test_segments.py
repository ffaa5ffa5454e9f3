"""Segments on the real PostgreSQL: every field and op, nesting, the boundaries (a birthday, an
expired grant, a distance, a number of days), preview, analytics checked by hand, compare, the
API's validation and tenancy.

The audience rows are inserted with SQL: what is tested here is how segments read the audience,
not how the bus fills it (tests/integration/test_campaigns_audience.py covers that)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from psycopg import sql as psql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services.campaigns import segments
from services.campaigns.repository import segments as repo

AT = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
LYON = (45.7640, 4.8357)
PARIS = (48.8566, 2.3522)  # 391.5 km from Lyon


@pytest.fixture()
def sql(settings):
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def add_contact(sql, tenant_id: str, known: bool = True, consents: dict | None = None, **fields) -> str:
    """An audience row (`known`: identity has told us of the contact) and its consents
    {purpose: (status, expires_at)}."""
    contact_id = str(uuid.uuid4())
    fields = {"attributes": Jsonb(fields.pop("attributes", {})), **fields}
    columns = ["tenant_id", "contact_id", "contact_version", *fields]
    sql.execute(
        psql.SQL("INSERT INTO campaigns.audience ({}) VALUES ({})").format(
            psql.SQL(", ").join(map(psql.Identifier, columns)),
            psql.SQL(", ").join([psql.Placeholder()] * len(columns))),
        [tenant_id, contact_id, AT if known else None, *fields.values()],
    )
    for purpose, (status, expires_at) in (consents or {}).items():
        sql.execute(
            "INSERT INTO campaigns.audience_consents (tenant_id, contact_id, purpose, status, record_id, captured_at,"
            " expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (tenant_id, contact_id, purpose, status, uuid.uuid4(), AT - timedelta(days=300), expires_at),
        )
    return contact_id


@pytest.fixture()
def people(sql, tenant, other_tenant) -> dict[str, str]:
    t = tenant.id
    return {
        "ana": add_contact(
            sql, t, birth_date=date(1990, 6, 15), city="Lyon", country="FR", profession="Software Engineer",
            interests=["tennis", "wine"], influence_tier="micro", influence_score=42.5, sentiment=0.6,
            satisfaction=80.0, last_checkin_at=AT - timedelta(days=2), last_checkin_lat=LYON[0],
            last_checkin_lon=LYON[1], last_purchase_at=AT - timedelta(days=10),
            attributes={"tier": "Gold", "ltv": 1200, "newsletter": True},
            consents={"email_marketing": ("granted", None),
                      "sms_marketing": ("granted", AT - timedelta(days=1))}),  # a grant that ran out
        "bob": add_contact(
            sql, t, age_min=30, age_max=39, city="PARIS", country="FR", profession="teacher", interests=["running"],
            influence_tier="nano", influence_score=10, satisfaction=40.0, last_checkin_at=AT - timedelta(days=40),
            last_checkin_lat=PARIS[0], last_checkin_lon=PARIS[1], last_purchase_at=AT - timedelta(days=100),
            attributes={"tier": "silver", "ltv": 300}, consents={"email_marketing": ("withdrawn", None)}),
        # turns 41 on AT's day
        "cem": add_contact(sql, t, birth_date=date(1985, 6, 15), city="Berlin", country="DE", influence_tier="none",
                           attributes={"ltv": "n/a"}, consents={"sms_marketing": ("expired", None)}),
        "dan": add_contact(sql, t, age_min=65, country="FR"),  # "65+", nothing else known
        # never in a segment: a profile identity has not told us of, another tenant's contact
        "eve": add_contact(sql, t, known=False, country="FR", city="Lyon", age_min=30, age_max=39),
        "zoe": add_contact(sql, other_tenant.id, country="FR", city="Lyon", birth_date=date(1990, 1, 1)),
    }


def who(campaigns_app, tenant, people, rules, at=AT) -> set[str]:
    names = {v: k for k, v in people.items()}
    with campaigns_app.extensions["liaison"].db.read() as uow:
        ids = repo.member_ids(uow, segments.compile_rules(rules, tenant.id, at))
    return {names[str(i)] for i in ids}


def c(field, op, value) -> dict:
    return {"field": field, "op": op, "value": value}


CASES = [
    # age: exact from the birth date, else every age of the range must satisfy
    (c("age", "gte", 65), {"dan"}),
    (c("age", "lte", 40), {"ana", "bob"}),
    (c("age", "eq", 36), {"ana"}),
    (c("age", "neq", 36), {"cem", "dan"}),  # bob's 30-39 may be 36: unknown, so neither eq nor neq
    (c("age", "between", [25, 45]), {"ana", "bob", "cem"}),
    (c("age", "between", [35, 50]), {"ana", "cem"}),
    (c("age", "exists", True), {"ana", "bob", "cem", "dan"}),
    (c("age", "exists", False), set()),
    # text, case-insensitive; unknown matches neither eq nor neq
    (c("city", "eq", "lyon"), {"ana"}),
    (c("city", "neq", "Lyon"), {"bob", "cem"}),
    (c("city", "in", ["paris", "BERLIN"]), {"bob", "cem"}),
    (c("city", "contains", "ARI"), {"bob"}),
    (c("city", "exists", False), {"dan"}),
    (c("profession", "contains", "engineer"), {"ana"}),
    (c("profession", "eq", "TEACHER"), {"bob"}),
    (c("country", "eq", "fr"), {"ana", "bob", "dan"}),
    (c("country", "neq", "FR"), {"cem"}),
    (c("country", "in", ["de", "ES"]), {"cem"}),
    # interests
    (c("interests", "contains", "Tennis"), {"ana"}),
    (c("interests", "contains", ["tennis", "wine"]), {"ana"}),
    (c("interests", "contains", ["tennis", "running"]), set()),
    (c("interests", "in", ["running", "tennis"]), {"ana", "bob"}),
    (c("interests", "exists", False), {"cem", "dan"}),
    # influence and engagement (bounds equal to stored reals match)
    (c("influence.tier", "gte", "micro"), {"ana"}),
    (c("influence.tier", "lte", "nano"), {"bob", "cem"}),
    (c("influence.tier", "eq", "none"), {"cem"}),
    (c("influence.tier", "neq", "none"), {"ana", "bob"}),
    (c("influence.tier", "in", ["nano", "mega"]), {"bob"}),
    (c("influence.score", "between", [10, 42.5]), {"ana", "bob"}),
    (c("influence.score", "gte", 42.5), {"ana"}),
    (c("influence.score", "eq", 10), {"bob"}),
    (c("engagement.satisfaction", "gte", 80), {"ana"}),
    (c("engagement.satisfaction", "lte", 40), {"bob"}),
    (c("engagement.sentiment", "exists", True), {"ana"}),
    # times, distance
    (c("last_checkin_at", "within_days", 7), {"ana"}),
    (c("last_checkin_at", "within_days", 60), {"ana", "bob"}),
    (c("last_checkin_at", "near", {"lat": 45.77, "lon": 4.84, "km": 5}), {"ana"}),
    (c("last_checkin_at", "near", {"lat": LYON[0], "lon": LYON[1], "km": 385}), {"ana"}),
    (c("last_checkin_at", "near", {"lat": LYON[0], "lon": LYON[1], "km": 395}), {"ana", "bob"}),
    (c("last_purchase_at", "gte", "2026-05-16T12:00:00Z"), {"ana"}),
    (c("last_purchase_at", "between", ["2025-12-27T00:00:00+01:00", "2026-04-26T12:00:00Z"]), {"bob"}),
    (c("last_purchase_at", "lte", "2026-03-07T12:00:00Z"), {"bob"}),  # exactly 100 days before AT
    (c("last_purchase_at", "exists", False), {"cem", "dan"}),
    # the CRM's attributes
    (c("attributes.tier", "eq", "gold"), {"ana"}),
    (c("attributes.tier", "neq", "gold"), {"bob"}),
    (c("attributes.tier", "in", ["GOLD", "silver"]), {"ana", "bob"}),
    (c("attributes.ltv", "gte", 1000), {"ana"}),  # cem's "n/a" is no number
    (c("attributes.ltv", "between", [200, 400]), {"bob"}),
    (c("attributes.ltv", "eq", 300), {"bob"}),
    (c("attributes.newsletter", "eq", True), {"ana"}),
    (c("attributes.tier", "exists", False), {"cem", "dan"}),
    # consent: a grant past its expiry is expired; no row is none
    (c("consent.email_marketing", "eq", "granted"), {"ana"}),
    (c("consent.email_marketing", "eq", "withdrawn"), {"bob"}),
    (c("consent.email_marketing", "eq", "none"), {"cem", "dan"}),
    (c("consent.email_marketing", "neq", "granted"), {"bob", "cem", "dan"}),
    (c("consent.sms_marketing", "eq", "expired"), {"ana", "cem"}),
    (c("consent.sms_marketing", "eq", "granted"), set()),
    (c("consent.sms_marketing", "in", ["none", "withdrawn"]), {"bob", "dan"}),
    # groups
    ({"all": [c("country", "eq", "FR"), {"any": [c("interests", "contains", "running"),
                                                 c("influence.tier", "gte", "micro")]}]}, {"ana", "bob"}),
    ({"any": [{"all": [c("city", "eq", "lyon"), c("age", "gte", 30)]}, {"all": [c("country", "eq", "DE")]}]},
     {"ana", "cem"}),
    ({"all": []}, {"ana", "bob", "cem", "dan"}),
]


@pytest.mark.parametrize(("rule", "expected"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_every_field_and_op(campaigns_app, tenant, people, rule, expected):
    rules = rule if ("all" in rule or "any" in rule) else {"all": [rule]}
    assert who(campaigns_app, tenant, people, rules) == expected


def test_a_birthday_moves_a_contact_out_of_an_age_range(campaigns_app, tenant, people):
    thirties = {"all": [c("age", "between", [30, 40])]}
    assert who(campaigns_app, tenant, people, thirties, AT - timedelta(days=1)) == {"ana", "bob", "cem"}
    assert who(campaigns_app, tenant, people, thirties, AT) == {"ana", "bob"}  # cem is 41 today


def test_a_grant_counts_until_it_expires(campaigns_app, tenant, people):
    granted = {"all": [c("consent.sms_marketing", "eq", "granted")]}
    assert who(campaigns_app, tenant, people, granted, AT - timedelta(days=2)) == {"ana"}
    assert who(campaigns_app, tenant, people, granted, AT) == set()


def test_within_days_counts_back_from_the_time_of_evaluation(campaigns_app, tenant, people):
    recent = {"all": [c("last_purchase_at", "within_days", 10)]}
    assert who(campaigns_app, tenant, people, recent) == {"ana"}
    assert who(campaigns_app, tenant, people, recent, AT + timedelta(minutes=1)) == set()


# -- the API -----------------------------------------------------------------------------------
FRENCH = {"all": [c("country", "eq", "FR")]}


def create(campaigns, tenant, rules, name="French", **headers):
    response = campaigns.post("/v1/segments", json={"name": name, "rules": rules},
                              headers={**tenant.marketing, **headers})
    assert response.status_code == 201, response.json
    return response.json


def test_create_read_list_update_delete(campaigns, tenant, people):
    first = create(campaigns, tenant, FRENCH)
    assert first["name"] == "French" and first["rules"] == FRENCH and first["created_at"]
    second = create(campaigns, tenant, {"all": []}, name="Everyone")
    assert campaigns.get(f"/v1/segments/{first['id']}", headers=tenant.compliance).json == first

    page = campaigns.get("/v1/segments?limit=1", headers=tenant.marketing).json
    assert [s["id"] for s in page["items"]] == [second["id"]] and page["next_cursor"]
    rest = campaigns.get(f"/v1/segments?limit=1&cursor={page['next_cursor']}", headers=tenant.marketing).json
    assert [s["id"] for s in rest["items"]] == [first["id"]] and rest["next_cursor"] is None

    renamed = campaigns.patch(f"/v1/segments/{first['id']}", json={"name": "France"}, headers=tenant.marketing)
    assert renamed.status_code == 200 and renamed.json["name"] == "France" and renamed.json["rules"] == FRENCH
    german = {"all": [c("country", "eq", "DE")]}
    changed = campaigns.patch(f"/v1/segments/{first['id']}", json={"rules": german}, headers=tenant.marketing)
    assert changed.json["rules"] == german
    preview = campaigns.get(f"/v1/segments/{first['id']}/preview", headers=tenant.marketing).json
    assert preview == {"count": 1, "sample": [people["cem"]]}  # evaluated as the rules are now

    assert campaigns.delete(f"/v1/segments/{first['id']}", headers=tenant.marketing).status_code == 204
    assert campaigns.get(f"/v1/segments/{first['id']}", headers=tenant.marketing).status_code == 404
    assert campaigns.delete(f"/v1/segments/{first['id']}", headers=tenant.marketing).status_code == 404


def test_preview_counts_and_samples_by_contact_id(campaigns, tenant, people):
    segment = create(campaigns, tenant, FRENCH)
    response = campaigns.get(f"/v1/segments/{segment['id']}/preview", headers=tenant.marketing)
    assert response.status_code == 200
    assert response.json == {"count": 3, "sample": sorted([people["ana"], people["bob"], people["dan"]])}


def test_bad_input_is_422_and_changes_nothing(campaigns, tenant, people):
    segment = create(campaigns, tenant, FRENCH)
    bad = {"all": [c("country", "eq", "FR"), c("age", "between", [40])]}
    response = campaigns.post("/v1/segments", json={"name": "x", "rules": bad}, headers=tenant.marketing)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert response.json["errors"] == {"rules.all.1.value": ["between takes [low, high]."]}
    response = campaigns.patch(f"/v1/segments/{segment['id']}", json={"name": "Renamed", "rules": bad},
                               headers=tenant.marketing)
    assert response.status_code == 422
    assert campaigns.get(f"/v1/segments/{segment['id']}", headers=tenant.marketing).json == segment
    assert campaigns.get("/v1/segments", headers=tenant.marketing).json["items"] == [segment]
    for body in ({"name": "x"}, {"name": "", "rules": FRENCH}, {"name": "x", "rules": [1]}):
        assert campaigns.post("/v1/segments", json=body, headers=tenant.marketing).status_code == 422
    assert campaigns.patch(f"/v1/segments/{segment['id']}", json={}, headers=tenant.marketing).status_code == 422
    unknown_op = {"all": [c("city", "sounds_like", "Lyon")]}
    response = campaigns.post("/v1/segments", json={"name": "x", "rules": unknown_op}, headers=tenant.marketing)
    assert list(response.json["errors"]) == ["rules.all.0.op"]
    assert campaigns.get("/v1/segments", headers=tenant.marketing).json["items"] == [segment]


def test_a_repeated_create_with_its_idempotency_key_creates_nothing(campaigns, tenant):
    first = create(campaigns, tenant, FRENCH, **{"Idempotency-Key": "seg-1"})
    again = create(campaigns, tenant, FRENCH, **{"Idempotency-Key": "seg-1"})
    assert again == first
    assert len(campaigns.get("/v1/segments", headers=tenant.marketing).json["items"]) == 1


def test_scopes_and_tenancy(campaigns, tenant, other_tenant, people):
    segment = create(campaigns, tenant, FRENCH)
    assert campaigns.post("/v1/segments", json={"name": "x", "rules": FRENCH}, headers=tenant.crm).status_code == 403
    assert campaigns.get("/v1/segments", headers=tenant.crm).status_code == 403
    assert campaigns.delete(f"/v1/segments/{segment['id']}", headers=tenant.compliance).status_code == 403
    for path in ("", "/preview", "/analytics"):
        assert campaigns.get(f"/v1/segments/{segment['id']}{path}", headers=other_tenant.marketing).status_code == 404
    assert campaigns.patch(f"/v1/segments/{segment['id']}", json={"name": "mine"},
                           headers=other_tenant.marketing).status_code == 404
    assert campaigns.delete(f"/v1/segments/{segment['id']}", headers=other_tenant.marketing).status_code == 404
    assert campaigns.get(f"/v1/segments/compare?ids={segment['id']}",
                         headers=other_tenant.marketing).status_code == 404
    # the other tenant's same rules count only its own contact (zoe)
    theirs = create(campaigns, other_tenant, FRENCH)
    assert campaigns.get(f"/v1/segments/{theirs['id']}/preview", headers=other_tenant.marketing).json == {
        "count": 1, "sample": [people["zoe"]]}
    assert campaigns.get(f"/v1/segments/{segment['id']}", headers=tenant.marketing).json["name"] == "French"


# -- previewing rules without saving them (the segment builder's live count) --------------------
NESTED = {"all": [c("country", "eq", "FR"), {"any": [c("age", "gte", 65), c("interests", "contains", "tennis")]}]}
PREVIEWED = [FRENCH, {"all": []}, NESTED, {"any": [c("city", "eq", "Lyon"), c("city", "eq", "Berlin")]},
             {"all": [c("country", "eq", "JP")]}]


def stored(sql, tenant_id: str) -> dict[str, int]:
    """What the tenant has in campaigns' tables a call could write to: segments, events, replies."""
    return {table: sql.execute(psql.SQL("SELECT count(*) AS n FROM campaigns.{} WHERE tenant_id = %s").format(
        psql.Identifier(table)), (tenant_id,)).fetchone()["n"] for table in ("segments", "outbox", "idempotency_keys")}


def preview_rules(campaigns, tenant, rules, headers=None):
    return campaigns.post("/v1/segments/preview", json={"rules": rules}, headers=headers or tenant.marketing)


def test_rules_preview_answers_as_saving_and_previewing_would_and_stores_nothing(campaigns, sql, tenant, people):
    before = stored(sql, tenant.id)
    answers = []
    for rules in PREVIEWED:
        response = preview_rules(campaigns, tenant, rules, {**tenant.marketing, "Idempotency-Key": "p-1"})
        assert response.status_code == 200, response.json
        answers.append(response.json)
    assert answers[0] == {"count": 3, "sample": sorted([people["ana"], people["bob"], people["dan"]])}
    assert answers[-1] == {"count": 0, "sample": []}
    assert stored(sql, tenant.id) == before  # no segment, no event, no stored reply
    assert campaigns.get("/v1/segments", headers=tenant.marketing).json["items"] == []
    for rules, answer in zip(PREVIEWED, answers, strict=True):
        segment = create(campaigns, tenant, rules)
        assert campaigns.get(f"/v1/segments/{segment['id']}/preview", headers=tenant.marketing).json == answer


def test_rules_preview_of_bad_rules_is_422_as_at_creation(campaigns, sql, tenant, people):
    before = stored(sql, tenant.id)
    for rules in ({"all": [c("country", "eq", "FR"), c("age", "between", [40])]},
                  {"all": [c("city", "sounds_like", "Lyon"), c("shoe_size", "eq", 42)]}, {"any": []}, [1]):
        previewed = preview_rules(campaigns, tenant, rules)
        created = campaigns.post("/v1/segments", json={"name": "x", "rules": rules}, headers=tenant.marketing)
        assert previewed.status_code == created.status_code == 422
        assert previewed.mimetype == "application/problem+json"
        assert previewed.json["errors"] == created.json["errors"] and previewed.json["detail"] == created.json["detail"]
    assert preview_rules(campaigns, tenant, {"all": [c("age", "between", [40])]}).json["errors"] == {
        "rules.all.0.value": ["between takes [low, high]."]}
    for body in ({}, {"rules": None}, {"rules": "country = FR"}):
        response = campaigns.post("/v1/segments/preview", json=body, headers=tenant.marketing)
        assert response.status_code == 422 and "rules" in response.json["errors"], body
    assert stored(sql, tenant.id) == before


def test_rules_preview_counts_only_the_keys_tenant(campaigns, tenant, other_tenant, people):
    everyone = {"all": []}
    assert preview_rules(campaigns, tenant, everyone).json["count"] == 4  # not eve (unknown), not zoe
    assert preview_rules(campaigns, other_tenant, everyone).json == {"count": 1, "sample": [people["zoe"]]}
    assert preview_rules(campaigns, other_tenant, {"all": [c("city", "eq", "Lyon")]}).json == {
        "count": 1, "sample": [people["zoe"]]}
    assert preview_rules(campaigns, tenant, FRENCH, tenant.compliance).status_code == 200  # a read, as preview
    assert preview_rules(campaigns, tenant, FRENCH, tenant.crm).status_code == 403
    assert campaigns.post("/v1/segments/preview", json={"rules": FRENCH}).status_code == 401


def exact_age(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def campaign(sql, tenant_id: str, segment_id: str) -> str:
    campaign_id = str(uuid.uuid4())
    sql.execute(
        "INSERT INTO campaigns.campaigns (tenant_id, id, name, segment_id, channels, strategy, content, status)"
        " VALUES (%s, %s, 'Spring', %s, '{email,sms}', 'all_eligible', '{}', 'completed')",
        (tenant_id, campaign_id, segment_id),
    )
    return campaign_id


def delivery(sql, tenant_id: str, campaign_id: str, contact_id: str, status: str, channel: str = "email") -> str:
    delivery_id = str(uuid.uuid4())
    sql.execute("INSERT INTO campaigns.deliveries (tenant_id, id, campaign_id, contact_id, channel, status)"
                " VALUES (%s, %s, %s, %s, %s, %s)", (tenant_id, delivery_id, campaign_id, contact_id, channel, status))
    return delivery_id


def conversion(sql, tenant_id: str, contact_id: str, value: float, campaign_id=None, delivery_id=None) -> None:
    sql.execute("INSERT INTO campaigns.conversions (tenant_id, id, contact_id, campaign_id, delivery_id, value,"
                " currency, occurred_at) VALUES (%s, %s, %s, %s, %s, %s, 'EUR', now())",
                (tenant_id, uuid.uuid4(), contact_id, campaign_id, delivery_id, value))


def test_analytics_by_hand(campaigns, sql, tenant, people):
    segment = create(campaigns, tenant, FRENCH)  # ana, bob, dan
    spring = campaign(sql, tenant.id, segment["id"])
    ana_email = delivery(sql, tenant.id, spring, people["ana"], "delivered")
    delivery(sql, tenant.id, spring, people["ana"], "sent", "sms")  # the same contact: reached once
    delivery(sql, tenant.id, spring, people["bob"], "sent")
    delivery(sql, tenant.id, spring, people["dan"], "failed")  # not reached
    conversion(sql, tenant.id, people["ana"], 100, spring, ana_email)
    conversion(sql, tenant.id, people["bob"], 25.5, campaign_id=spring)  # attributed to the campaign
    other = campaign(sql, tenant.id, str(uuid.uuid4()))  # another segment's campaign: not counted
    conversion(sql, tenant.id, people["cem"], 999, other, delivery(sql, tenant.id, other, people["cem"], "sent"))

    response = campaigns.get(f"/v1/segments/{segment['id']}/analytics", headers=tenant.marketing)
    assert response.status_code == 200
    body = response.json
    ana_age = exact_age(date(1990, 6, 15), datetime.now(UTC).date())
    ages = [ana_age, 34.5]  # bob: middle of 30-39; dan's 65+ has no middle
    mean = sum(ages) / 2
    assert body["segment_id"] == segment["id"] and body["size"] == 3
    assert body["tiers"] == {"none": 0, "nano": 1, "micro": 1, "macro": 0, "mega": 0, "unknown": 1}
    assert body["age"]["mean"] == pytest.approx(mean)
    assert body["age"]["std"] == pytest.approx(abs(ana_age - 34.5) / 2)  # population: |a - b| / 2 for two
    assert body["influence_score"] == {"mean": pytest.approx(26.25), "std": pytest.approx(16.25)}
    assert body["satisfaction"] == {"mean": pytest.approx(60.0), "std": pytest.approx(20.0)}
    assert body["conversion_rate"] == pytest.approx(1.0)  # 2 conversions / 2 contacts reached
    assert body["revenue"] == pytest.approx(125.5)


def test_analytics_over_no_data_are_null(campaigns, tenant, people):
    nobody = create(campaigns, tenant, {"all": [c("country", "eq", "JP")]})
    body = campaigns.get(f"/v1/segments/{nobody['id']}/analytics", headers=tenant.marketing).json
    assert body == {"segment_id": nobody["id"], "size": 0,
                    "tiers": {"none": 0, "nano": 0, "micro": 0, "macro": 0, "mega": 0, "unknown": 0},
                    "age": {"mean": None, "std": None}, "influence_score": {"mean": None, "std": None},
                    "satisfaction": {"mean": None, "std": None}, "conversion_rate": None, "revenue": 0.0}
    german = create(campaigns, tenant, {"all": [c("country", "eq", "DE")]})  # cem alone
    body = campaigns.get(f"/v1/segments/{german['id']}/analytics", headers=tenant.marketing).json
    assert body["size"] == 1 and body["age"]["std"] == 0.0 and body["satisfaction"] == {"mean": None, "std": None}


def test_compare_answers_in_the_order_asked(campaigns, tenant, people):
    french = create(campaigns, tenant, FRENCH)
    german = create(campaigns, tenant, {"all": [c("country", "eq", "DE")]}, name="German")
    everyone = create(campaigns, tenant, {"all": []}, name="Everyone")
    ids = [german["id"], everyone["id"], french["id"]]
    response = campaigns.get(f"/v1/segments/compare?ids={','.join(ids)}", headers=tenant.marketing)
    assert response.status_code == 200
    assert [(i["segment_id"], i["size"]) for i in response.json["items"]] == [
        (german["id"], 1), (everyone["id"], 4), (french["id"], 3)]
    missing = str(uuid.uuid4())
    response = campaigns.get(f"/v1/segments/compare?ids={french['id']},{missing}", headers=tenant.marketing)
    assert response.status_code == 404 and missing in response.json["detail"]
    too_many = ",".join([french["id"]] * 21)
    response = campaigns.get(f"/v1/segments/compare?ids={too_many}", headers=tenant.marketing)
    assert response.status_code == 422 and "ids" in response.json["errors"]
    assert campaigns.get("/v1/segments/compare?ids=nope", headers=tenant.marketing).status_code == 422
    assert campaigns.get("/v1/segments/compare", headers=tenant.marketing).status_code == 422


def test_a_segment_an_unfinished_campaign_targets_cannot_be_deleted(campaigns, sql, tenant):
    segment = create(campaigns, tenant, FRENCH)
    sql.execute(
        "INSERT INTO campaigns.campaigns (tenant_id, id, name, segment_id, channels, strategy, content, status)"
        " VALUES (%s, %s, 'Draft', %s, '{email}', 'first_eligible', '{}', 'draft')",
        (tenant.id, uuid.uuid4(), segment["id"]),
    )
    assert campaigns.delete(f"/v1/segments/{segment['id']}", headers=tenant.marketing).status_code == 409
    assert campaigns.get(f"/v1/segments/{segment['id']}", headers=tenant.marketing).status_code == 200


def test_the_openapi_document_covers_segments(campaigns, tenant):
    document = campaigns.get("/openapi.json").json
    paths = document["paths"]
    for path in ("/v1/segments", "/v1/segments/compare", "/v1/segments/preview", "/v1/segments/{segment_id}",
                 "/v1/segments/{segment_id}/preview", "/v1/segments/{segment_id}/analytics"):
        assert path in paths, path
    assert "rules.all.2.value" in document["components"]["schemas"]["SegmentIn"]["properties"]["rules"]["description"]
    response = campaigns.post("/v1/segments", data="{not json", content_type="application/json",
                              headers=tenant.marketing)
    assert response.status_code == 400
