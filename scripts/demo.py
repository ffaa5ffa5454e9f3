"""`make demo`: Liaison's story, played over HTTP against a running stack, narrated step by step.

    .venv/bin/python -m scripts.demo [--contacts 10000] [--start-stack]

A shop selling tennis gear in Paris: its CRM exports N contacts; a quarter of them came through
the web form, with their X handle and their consent choices (some refuse SMS, some refuse
geolocation). Enrichment builds their profiles from the provider sandbox, a day of social
listening comes in (mentions in English and French, check-ins, new follows), marketing builds the
segment "30 to 40, interested in tennis, in Paris, positive about the brand" and launches an
offer by email with SMS as the fallback. A check-in near the shop triggers an SMS, a new follower
gets a welcome DM, a contact unsubscribes in one click and gets nothing more, conversions come in
and the report shows each channel's ROI. Last, the compliance officer exports one contact's data,
erases them, watches the erasure complete in every service and verifies the audit chain.

Enrichment comes before the day's feed, and waits (asking again while it answers `skipped`) until
enrichment has received the consents over the bus: a check-in is kept only under a geolocation
consent enrichment already knows of, so a feed posted the instant the consents are recorded could
lose check-ins the story says are kept.

Every step checks its outcome against what the story says, and the script exits 1 naming the
step that did not go as told. Asynchronous effects (events over the bus, background jobs, sends)
are waited for by polling, each with a time limit.

How the audience is made to match the segment, honestly: the provider sandbox answers every
handle and email with a stable synthetic person (sandbox/synthetic.py), and that is its known,
documented data. The demo picks, for the contacts it means to be in the segment, an X handle
whose synthetic person lives in Paris and likes tennis (enrichment asks X, and FullContact about
that X account); age comes from the CRM (`attributes.birth_date`, which
campaigns uses for an exact age); "positive about the brand" comes from their mentions in the
day's feed, scored by enrichment. The expected segment is computed from the same synthetic data
for every contact, so the count the service answers is checked exactly, not merely "some".

Services' URLs are the ones `make run` uses (IDENTITY_URL, ...), the admin key is
LIAISON_ADMIN_KEY, else var/secrets.env. `--start-stack` starts `make run` (scripts.run) when no
stack answers, and stops it at the end (as .ci/run does); with a stack already running, it
plays against it and leaves it running.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from sandbox.synthetic import account_id, persona
from scripts.run import SECRETS, Service, present_services, sandbox_service
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
THREADS = 8
PROVIDERS = ("X_API", "INSTAGRAM", "FACEBOOK", "FULLCONTACT")  # enrichment's, as their <P>_RATE_PER_SECOND names them
BRAND = "liaison_sports"
SHOP = {"name": "Liaison Sports, rue de Rivoli", "lat": 48.8606, "lon": 2.3376}
ELSEWHERE = (  # the day's check-ins, all more than 3 km from the shop
    {"name": "Roland-Garros", "lat": 48.8470, "lon": 2.2530},
    {"name": "Parc de la Villette", "lat": 48.8938, "lon": 2.3908},
    {"name": "Bois de Vincennes", "lat": 48.8283, "lon": 2.4330},
)
POSITIVE = (
    f"Love the new racket from @{BRAND}, great service and friendly staff!",
    f"J'adore la boutique @{BRAND}, super accueil, merci !",
    f"Excellent conseil chez @{BRAND}, je recommande !",
    f"Great tennis gear at @{BRAND}, I recommend it",
)
NEGATIVE = (
    f"Terrible experience at @{BRAND}, the order arrived broken. Never again.",
    f"Très déçu par @{BRAND}, livraison en retard et service nul.",
)
NEUTRAL = (f"Visited @{BRAND} today to look at rackets.", f"Passé chez @{BRAND} cet après-midi.")
POSITIVE_FROM = 0.5  # "positive about the brand": the profile's sentiment at least this
CHECKIN_SMS_TARGET_S = 1.0  # the promise: an SMS within a second of the check-in (p50)
CHECKIN_SMS_FAIL_S = 5.0  # fail only above this, so a busy CI machine does not flake
FIRST_NAMES = ("Camille", "Léa", "Hugo", "Lucas", "Inès", "Jules", "Manon", "Louis", "Chloé", "Gabriel")
LAST_NAMES = ("Martin", "Bernard", "Dubois", "Moreau", "Laurent", "Girard", "Roux", "Fontaine", "Lefebvre", "Petit")


class StoryFailure(Exception):
    """A step's outcome is not what the story says."""


# -- output and checks --------------------------------------------------------------------------
_started = time.monotonic()
_step = "setup"


def step(title: str) -> None:
    global _step
    _step = title
    print(f"\n[{time.monotonic() - _started:6.1f}s] {title}", flush=True)


def say(text: str) -> None:
    print(f"         {text}", flush=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise StoryFailure(message)


def until(what: str, timeout: float, probe: Callable[[], Any], interval: float = 0.25) -> Any:
    """Polls `probe` until it answers something truthy; fails the step after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise StoryFailure(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


# -- HTTP ---------------------------------------------------------------------------------------
_local = threading.local()


def _session() -> requests.Session:
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def call(method: str, url: str, key: str | None = None, expect: int | tuple[int, ...] = 200,
         **kwargs: Any) -> Any:
    """One request; an answer other than `expect` fails the step with what the service said."""
    headers = kwargs.pop("headers", {})
    if key:
        headers["Authorization"] = f"Bearer {key}"
    response = _session().request(method, url, headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs)
    wanted = (expect,) if isinstance(expect, int) else expect
    if response.status_code not in wanted:
        raise StoryFailure(f"{method} {url.split('?')[0]}: expected {' or '.join(map(str, wanted))}, "
                           f"got {response.status_code}: {response.text[:400]}")
    if "json" in response.headers.get("Content-Type", ""):
        return response.json()
    return response.text


def parallel(work: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(work, items))


# -- the CRM export -----------------------------------------------------------------------------
@dataclass
class Person:
    index: int
    email: str
    phone: str
    first_name: str
    last_name: str
    birth_date: date
    handle: str | None = None  # X handle, for the quarter that came through the web form
    x_user_id: str | None = None
    consents: dict[str, str] = field(default_factory=dict)  # purpose -> granted | withdrawn
    mention: str | None = None  # the text of their mention of the brand in the day's feed
    role: str = ""  # "target", "checkin", "follower" or ""
    contact_id: str = ""

    @property
    def age(self) -> int:
        today = datetime.now(UTC).date()
        return today.year - self.birth_date.year - ((today.month, today.day) < (self.birth_date.month,
                                                                                 self.birth_date.day))

    def in_segment(self) -> bool:
        """What the segment should hold, from the sandbox's known synthetic data."""
        if not self.handle or self.consents.get("profile_enrichment") != "granted" or self.mention not in POSITIVE:
            return False
        return 30 <= self.age <= 40 and _fits(self.handle)


def _fits(handle: str) -> bool:
    """Enrichment asks X about the handle and FullContact about the X account (the CRM gives no
    email to enrichment): both answer the X account's synthetic person."""
    person = persona("x", handle)
    return person.place.city == "Paris" and "Tennis" in person.interests


def _ascii(name: str) -> str:
    return unicodedata.normalize("NFKD", name.lower()).encode("ascii", "ignore").decode()


def _birth_date(index: int, age: int) -> date:
    today = datetime.now(UTC).date()
    return date(today.year - age - 1, 1 + index % 12, 1 + index % 28)  # birthday past or to come: age or age+1


def _find(prefix: str, accepts: Callable[[str], bool]) -> str:
    for n in range(1000):
        candidate = f"{prefix}_{n}" if n else prefix
        if accepts(candidate):
            return candidate
    raise StoryFailure(f"no synthetic person fits {prefix}")


def crm_export(count: int, run: str) -> list[Person]:
    """`count` contacts. Every 4th came through the web form (handle and consents); one in five
    of those is made to fit the segment; a few others play the check-in and the follow."""
    people = []
    for i in range(count):
        first, last = FIRST_NAMES[i % 10], LAST_NAMES[(i // 10) % 10]
        base = f"{_ascii(first)}.{_ascii(last)}.{run}.{i}"
        person = Person(i, f"{base}@example.com", f"+336{10_000_000 + i:08d}", first, last,
                        _birth_date(i, 18 + (i * 7919) % 58))
        if i % 4 == 0:
            form = i // 4
            person.handle = f"{_ascii(first)[0]}{_ascii(last)[0]}{run[:4]}{i}"  # X allows 15 characters
            # In the order they are recorded: profile_enrichment last, so that once enrichment
            # knows it, it has most likely seen the others (geolocation decides check-ins).
            person.consents = {"email_marketing": "granted", "geolocation": "withdrawn" if form % 3 == 2 else "granted",
                               "sms_marketing": "withdrawn" if form % 4 == 3 else "granted",
                               "profile_enrichment": "granted"}
            if form % 5 == 0:  # made to fit: 32 to 39, tennis, Paris, and a positive mention
                person.role = "target"
                person.birth_date = _birth_date(i, 32 + (form // 50) % 7)
                person.handle = _find(person.handle, _fits)
                # Some of them refuse email (SMS is then the fallback), some both, some SMS only.
                pattern = (form // 5) % 10
                person.consents["email_marketing"] = "withdrawn" if pattern in (0, 1, 2) else "granted"
                person.consents["sms_marketing"] = "withdrawn" if pattern in (2, 3, 4) else "granted"
                person.mention = POSITIVE[form % len(POSITIVE)]
            else:
                person.mention = (POSITIVE + NEGATIVE + NEUTRAL + (None,) * 8)[form % 16]
            person.x_user_id = str(account_id("x", person.handle, 19))
        people.append(person)
    # The live moments: five contacts check in near the shop, one follows the brand's account.
    spare = [p for p in people if p.handle and not p.role and p.consents["sms_marketing"] == "granted"
             and p.consents["geolocation"] == "granted"]
    check(len(spare) >= 6, "at least ~100 contacts are needed for the story (--contacts)")
    for person in spare[:5]:
        person.role = "checkin"
    spare[5].role = "follower"
    spare[5].consents["social_dm_marketing"] = "granted"
    return people


# -- the story ----------------------------------------------------------------------------------
@dataclass
class Stack:
    identity: str
    enrichment: str
    campaigns: str
    sandbox: str
    admin_key: str


def outbox(stack: Stack, channel: str) -> list[dict[str, Any]]:
    return call("GET", f"{stack.sandbox}/sandbox/outbox", params={"channel": channel})["items"]


def play(stack: Stack, count: int) -> None:
    run = uuid.uuid4().hex[:6]
    now = datetime.now(UTC)
    consent_form = {"legal_basis": "consent", "source": {"system": "demo-crm", "form": "web-signup"},
                    "notice_version": "2026-01"}

    step("1. A tenant and its API keys")
    tenant = call("POST", f"{stack.identity}/v1/tenants", stack.admin_key, 201,
                  json={"name": f"Liaison Sports ({run})"})
    keys = {scope: call("POST", f"{stack.identity}/v1/tenants/{tenant['id']}/api-keys", stack.admin_key, 201,
                        json={"name": f"demo {scope}", "scopes": [scope]})["key"]
            for scope in ("crm", "marketing", "compliance")}
    crm, marketing, compliance = keys["crm"], keys["marketing"], keys["compliance"]
    say(f"tenant {tenant['id']} \"{tenant['name']}\"; keys: crm, marketing, compliance")
    call("DELETE", f"{stack.sandbox}/sandbox/outbox", expect=(200, 204))
    say("the provider sandbox's outbox is emptied, so what arrives there now is this demo's")

    step(f"2. Import {count:,} contacts from the CRM export")
    people = crm_export(count, run)
    started = time.monotonic()
    created = 0
    for offset in range(0, count, 10_000):
        batch = people[offset:offset + 10_000]
        answer = call("POST", f"{stack.identity}/v1/contacts/bulk", crm, json={"contacts": [{
            "crm_ref": {"system": "demo-crm", "id": f"C{p.index:06d}"}, "email": p.email, "phone": p.phone,
            "first_name": p.first_name, "last_name": p.last_name, "locale": "fr-FR", "timezone": "Europe/Paris",
            "attributes": {"birth_date": p.birth_date.isoformat(), "loyalty": "gold" if p.index % 9 == 0 else "basic"},
        } for p in batch]})
        check(not answer["errors"], f"the import reported errors: {answer['errors'][:3]}")
        created += answer["created"]
    check(created == count, f"{created} contacts created, expected {count}")
    say(f"{created:,} created in {time.monotonic() - started:.1f} s (bulk, 10,000 per call)")
    # The contacts' ids: the CRM looks up the ones it works with by its own reference.
    involved = [p for p in people if p.handle]

    def find_id(person: Person) -> None:
        items = call("GET", f"{stack.identity}/v1/contacts", crm,
                     params={"crm_system": "demo-crm", "crm_id": f"C{person.index:06d}"})["items"]
        check(len(items) == 1, f"contact C{person.index:06d}: {len(items)} found")
        person.contact_id = items[0]["id"]

    parallel(find_id, involved)

    step("3. Link their social handles (the web-form quarter gave their X handle)")
    started = time.monotonic()
    parallel(lambda p: call("POST", f"{stack.identity}/v1/contacts/{p.contact_id}/identities", crm, 201, json={
        "network": "x", "handle": f"https://x.com/{p.handle}", "network_user_id": p.x_user_id,
        "source": "web-signup"}), involved)
    sample = involved[0]
    resolved = call("GET", f"{stack.identity}/v1/identities/resolve", crm,
                    params={"network": "x", "handle": "@" + sample.handle.upper()})
    check(resolved["contact_id"] == sample.contact_id, "a linked handle does not resolve to its contact")
    say(f"{len(involved):,} X handles linked in {time.monotonic() - started:.1f} s; "
        f"@{sample.handle.upper()} resolves to contact {sample.contact_id}")

    step("4. Record consents as the CRM's web form captured them")
    started = time.monotonic()
    records = [(p, purpose, status) for p in involved for purpose, status in p.consents.items()]
    captured = (now - timedelta(days=30)).isoformat()
    parallel(lambda r: call("POST", f"{stack.identity}/v1/contacts/{r[0].contact_id}/consents", crm, 201, json={
        "purpose": r[1], "status": r[2], "captured_at": captured, **consent_form}), records)
    tally: dict[str, list[int]] = {}
    for _, purpose, status in records:
        tally.setdefault(purpose, [0, 0])[status != "granted"] += 1
    say(f"{len(records):,} records in {time.monotonic() - started:.1f} s: "
        + "; ".join(f"{purpose} {g} granted, {w} refused" for purpose, (g, w) in tally.items()))
    refuser = next(p for p in involved if p.consents["sms_marketing"] == "withdrawn")
    answer = call("GET", f"{stack.identity}/v1/consents/check", crm,
                  params={"contact_id": refuser.contact_id, "purpose": "sms_marketing"})
    check(answer["allowed"] is False, f"SMS allowed for a contact who refused it: {answer}")
    say(f"check: SMS for a contact who refused it -> allowed={answer['allowed']} ({answer.get('reason')})")

    step("5. Enrich the profiles (the sandbox answers X and FullContact with synthetic people)")
    started = time.monotonic()
    # Consent reaches enrichment over the bus: a request made before it arrives is skipped
    # (no_consent), so the skipped ones are asked again until enrichment knows every consent.
    jobs: list[dict[str, Any]] = []
    asking = involved
    deadline = time.monotonic() + 60
    while asking:
        answers = parallel(lambda p: (p, call("POST", f"{stack.enrichment}/v1/enrichments", crm, 202,
                                              json={"contact_id": p.contact_id})), asking)
        jobs += [job for _, job in answers if job["status"] == "queued"]
        asking = [p for p, job in answers if job["status"] != "queued"]
        if asking and time.monotonic() > deadline:
            raise StoryFailure(f"{len(asking)} enrichments still skipped (no consent) 60 s after the consents")
        if asking:
            time.sleep(0.5)
    pending = [j["id"] for j in jobs]
    outcomes: dict[str, int] = {}
    deadline = time.monotonic() + max(120.0, len(pending) / 5)
    while pending:
        answers = parallel(lambda job_id: call("GET", f"{stack.enrichment}/v1/enrichments/{job_id}", crm), pending)
        pending = [a["id"] for a in answers if a["status"] in ("queued", "running")]
        for a in answers:
            if a["status"] not in ("queued", "running"):
                outcomes[a["status"]] = outcomes.get(a["status"], 0) + 1
        done = len(jobs) - len(pending)
        if pending and time.monotonic() - started > 20 and done / (time.monotonic() - started) < 2:
            raise StoryFailure(f"enrichment runs at {done / (time.monotonic() - started):.1f} jobs a second "
                               f"({len(pending)} to go): the stack runs with the providers' default rate limits; "
                               "start it with X_API_RATE_PER_SECOND, FULLCONTACT_RATE_PER_SECOND, ... raised "
                               "(`make demo` with no stack running does it)")
        if pending:
            if time.monotonic() > deadline:
                raise StoryFailure(f"{len(pending)} enrichment jobs still queued or running; was the stack started "
                                   "with the providers' rate limits raised (X_API_RATE_PER_SECOND, ..., as "
                                   "`make demo` does)?")
            time.sleep(1)
    check(outcomes == {"completed": len(jobs)}, f"enrichment outcomes {outcomes}, expected all completed")
    say(f"{len(jobs):,} profiles enriched in {time.monotonic() - started:.1f} s")
    step("6. A day of social listening: mentions (English and French), check-ins, new follows")
    day = now - timedelta(hours=20)
    events: list[dict[str, Any]] = []
    for n, p in enumerate(involved):
        at = (day + timedelta(seconds=n * 7)).isoformat()
        if p.mention:
            events.append({"type": "mention", "network": "x", "handle": p.handle, "occurred_at": at,
                           "text": p.mention, "brand_account": BRAND})
        if n % 2 == 0 and p.role != "checkin":
            events.append({"type": "checkin", "network": "x", "handle": p.handle, "occurred_at": at,
                           "place": ELSEWHERE[n % len(ELSEWHERE)]})
    prospects = [f"fan_{run}_{n}" for n in range(max(10, count // 100))]
    for n, handle in enumerate(prospects):
        at = (day + timedelta(seconds=n * 11)).isoformat()
        events.append({"type": "follow", "network": "x", "handle": handle, "occurred_at": at, "brand_account": BRAND,
                       "followers": 100 * (n + 1)})
        if n % 2 == 0:
            events.append({"type": "mention", "network": "x", "handle": handle, "occurred_at": at,
                           "text": POSITIVE[n % len(POSITIVE)], "brand_account": BRAND, "followers": 100 * (n + 1)})
    accepted = skipped = 0
    for offset in range(0, len(events), 1000):
        answer = call("POST", f"{stack.enrichment}/v1/social/events", crm, 202,
                      json={"events": events[offset:offset + 1000]})
        accepted += answer["accepted"]
        skipped += answer["skipped"]
    kinds = {k: sum(e["type"] == k for e in events) for k in ("mention", "checkin", "follow")}
    refused_checkins = sum(1 for n, p in enumerate(involved) if n % 2 == 0 and p.role != "checkin"
                           and p.consents["geolocation"] != "granted")
    french = sum(1 for e in events if e["type"] == "mention" and e["text"] in (POSITIVE[1], POSITIVE[2], NEGATIVE[1],
                                                                                NEUTRAL[1]))
    say(f"{len(events):,} events: {kinds['mention']:,} mentions ({french:,} in French), {kinds['checkin']:,} "
        f"check-ins, {kinds['follow']:,} new follows from {len(prospects)} handles not in the CRM yet")
    check(skipped == refused_checkins, f"{skipped} check-ins skipped, expected {refused_checkins} "
                                       "(the contacts who refused geolocation)")
    check(accepted == len(events) - skipped, f"{accepted} events stored, expected {len(events) - skipped}")
    say(f"stored {accepted:,}; {skipped:,} check-ins dropped: those contacts refused geolocation")
    listed = call("GET", f"{stack.enrichment}/v1/social/prospects", marketing, params={"limit": 3})["items"]
    check(bool(listed), "no prospects listed after follows from unknown handles")
    say("top social leads (prospects): " + ", ".join(
        f"@{p['handle']} ({p['mentions']} mention, {p['influence']['followers'] if p['influence'] else '?'} followers)"
        for p in listed))

    target = next(p for p in involved if p.role == "target")
    profile = until("the mention in the profile's engagement", 30, lambda: (
        lambda prof: prof if prof["engagement"]["mentions"] else None)(
        call("GET", f"{stack.enrichment}/v1/profiles/{target.contact_id}", marketing)))
    demo = profile["demographics"]
    say(f"e.g. {target.first_name} {target.last_name}: {demo['city']}, {demo['country']}, age range {demo['age']}, "
        f"{demo['profession']}, likes {', '.join(demo['interests'])}; {profile['influence']['followers']} followers "
        f"({profile['influence']['tier']}); sentiment {profile['engagement']['sentiment']}")
    check(demo["city"] == "Paris" and "tennis" in [i.lower() for i in demo["interests"]],
          f"the profile does not hold the sandbox's data: {demo}")
    check((profile["engagement"]["sentiment"] or 0) >= POSITIVE_FROM,
          f"a positive mention did not make the profile positive: {profile['engagement']}")

    step('7. The segment "30 to 40, interested in tennis, in Paris, positive about the brand"')
    expected = [p for p in people if p.in_segment()]
    segment = call("POST", f"{stack.campaigns}/v1/segments", marketing, 201, json={
        "name": "Paris tennis fans, 30-40, positive", "rules": {"all": [
            {"field": "age", "op": "between", "value": [30, 40]},
            {"field": "interests", "op": "contains", "value": "tennis"},
            {"field": "city", "op": "eq", "value": "Paris"},
            {"field": "engagement.sentiment", "op": "gte", "value": POSITIVE_FROM},
        ]}})
    preview_url = f"{stack.campaigns}/v1/segments/{segment['id']}/preview"
    seen: dict[str, int] = {}

    def segment_complete() -> bool:  # profiles reach campaigns by event: wait for the last ones
        seen["count"] = call("GET", preview_url, marketing)["count"]
        return seen["count"] == len(expected)

    try:
        until("the segment", 60, segment_complete, interval=1)
    except StoryFailure:
        raise StoryFailure(f"the segment holds {seen.get('count')} contacts, expected {len(expected)} "
                           "(computed from the sandbox's synthetic data)") from None
    designed = sum(p.role == "target" for p in expected)
    say(f"{len(expected)} contacts, as computed from the sandbox's data ({designed} picked to fit, "
        f"{len(expected) - designed} fit by chance), out of {count:,}")

    step("8. Launch the offer: email first, SMS as the fallback")
    tag = f"RG{run.upper()}"
    offer = {
        "name": "Roland-Garros week", "segment_id": segment["id"], "channels": ["email", "sms"],
        "strategy": "first_eligible", "cost_per_message": {"email": 0.01, "sms": 0.08},
        "content": {
            "email": {"subject": "{{ contact.first_name }}, 20% off rackets this week",
                      "body": "Hello {{ contact.first_name }}, tennis fans in {{ profile.city }} get 20% off: "
                              "{{ link('https://shop.example/rg?code=" + tag + "') }}"},
            "sms": {"body": "Liaison Sports: 20% off rackets this week, code " + tag + " "
                            "{{ link('https://shop.example/rg') }}"},
            "web": {"title": "20% off rackets", "body": "Code " + tag},
        }}
    campaign = call("POST", f"{stack.campaigns}/v1/campaigns", marketing, 201, json=offer)
    call("POST", f"{stack.campaigns}/v1/campaigns/{campaign['id']}/launch", marketing, 202)
    by_email = [p for p in expected if p.consents["email_marketing"] == "granted"]
    by_sms = [p for p in expected if p.consents["email_marketing"] != "granted"
              and p.consents["sms_marketing"] == "granted"]
    unreachable = len(expected) - len(by_email) - len(by_sms)
    report_url = f"{stack.campaigns}/v1/campaigns/{campaign['id']}/report"

    def all_sent() -> dict[str, Any] | None:
        report = call("GET", report_url, marketing)
        sent = {c: report["by_channel"].get(c, {}).get("sent", 0) for c in ("email", "sms")}  # sent counts delivered
        last["report"] = report
        return report if sent == {"email": len(by_email), "sms": len(by_sms)} else None

    started = time.monotonic()
    last: dict[str, Any] = {}
    try:
        report = until(f"the sends ({len(by_email)} emails, {len(by_sms)} SMS)", 90, all_sent, interval=0.5)
    except StoryFailure as exc:
        raise StoryFailure(f"{exc}; the report says {last.get('report')}") from None
    check(report["suppressed"]["no_consent"] == unreachable,
          f"{report['suppressed']['no_consent']} suppressed for no consent, expected {unreachable}")
    addresses = {p.email for p in by_email}

    def at_the_sink() -> list[str] | None:
        got = [a for a in addresses if any(a in json.dumps(m) for m in outbox(stack, "email"))]
        return got if len(got) == len(addresses) else None

    emails = until("the emails at the SMTP sink", 30, at_the_sink)
    say(f"sent in {time.monotonic() - started:.1f} s: {len(by_email)} by email, {len(by_sms)} by SMS (they refused "
        f"email), {unreachable} not at all (refused both: suppressed, no_consent)")
    say(f"the sandbox's SMTP sink received the {len(emails)} emails, its SMS API "
        f"{sum(tag in json.dumps(m) for m in outbox(stack, 'sms'))} SMS")

    step("9. A check-in near the shop triggers an SMS")
    trigger = call("POST", f"{stack.campaigns}/v1/triggers", marketing, 201, json={
        "name": "Near the Rivoli shop", "event": "social.checkin", "channel": "sms", "cooldown_hours": 24,
        "conditions": {"geofence": {"lat": SHOP["lat"], "lon": SHOP["lon"], "radius_m": 300}},
        "content": {"body": f"{{{{ contact.first_name }}}}, you're next to Liaison Sports: show this SMS "
                            f"for a free restring today. [{tag}-shop]"}})
    latencies = []
    for p in (q for q in people if q.role == "checkin"):
        posted = time.monotonic()
        call("POST", f"{stack.enrichment}/v1/social/events", crm, 202, json={"events": [{
            "type": "checkin", "network": "x", "handle": p.handle, "occurred_at": datetime.now(UTC).isoformat(),
            "place": {"name": SHOP["name"], "lat": SHOP["lat"] + 0.0004, "lon": SHOP["lon"]}}]})
        until(f"the SMS after {p.first_name}'s check-in", 30, lambda p=p: [
            m for m in outbox(stack, "sms") if f"{tag}-shop" in json.dumps(m) and p.phone in json.dumps(m)],
            interval=0.02)
        latencies.append(time.monotonic() - posted)
    p50 = statistics.median(latencies)
    say(f"{len(latencies)} check-ins 45 m from the shop: SMS in the sandbox after "
        + ", ".join(f"{s * 1000:.0f}" for s in latencies) + " ms")
    say(f"check-in -> SMS latency p50 {p50 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms (promise: p50 under "
        f"{CHECKIN_SMS_TARGET_S:.0f} s: {'kept' if p50 < CHECKIN_SMS_TARGET_S else 'MISSED'}; the demo fails "
        f"only above {CHECKIN_SMS_FAIL_S:.0f} s, so that a busy machine does not make it flaky)")
    check(p50 <= CHECKIN_SMS_FAIL_S, f"check-in -> SMS p50 {p50:.2f} s, above {CHECKIN_SMS_FAIL_S:.0f} s")
    far = [q for q in involved if q.role != "checkin" and q.consents["geolocation"] == "granted"][0]
    call("POST", f"{stack.enrichment}/v1/social/events", crm, 202, json={"events": [{
        "type": "checkin", "network": "x", "handle": far.handle, "occurred_at": datetime.now(UTC).isoformat(),
        "place": ELSEWHERE[0]}]})

    step("10. A new follower gets a welcome DM")
    follower = next(p for p in people if p.role == "follower")
    call("POST", f"{stack.campaigns}/v1/triggers", marketing, 201, json={
        "name": "Welcome, new follower", "event": "social.follow", "channel": "social_dm",
        "conditions": {"network": "x"},
        "content": {"body": f"Thanks for following us, {{{{ contact.first_name }}}}! [{tag}-welcome]"}})
    posted = time.monotonic()
    call("POST", f"{stack.enrichment}/v1/social/events", crm, 202, json={"events": [{
        "type": "follow", "network": "x", "handle": follower.handle, "occurred_at": datetime.now(UTC).isoformat(),
        "brand_account": BRAND}]})
    dm = until("the welcome DM in the sandbox", 30, lambda: [
        m for m in outbox(stack, "social_dm") if f"{tag}-welcome" in json.dumps(m)], interval=0.05)
    check(follower.x_user_id in json.dumps(dm[0]), f"the DM did not go to X user {follower.x_user_id}: {dm[0]}")
    say(f"@{follower.handle} followed @{BRAND}: welcome DM to X user {follower.x_user_id} after "
        f"{(time.monotonic() - posted) * 1000:.0f} ms")
    far_sms = [q for q in call("GET", f"{stack.campaigns}/v1/triggers/{trigger['id']}/deliveries", marketing)["items"]
               if q["contact_id"] == far.contact_id]
    check(not far_sms, f"a check-in 6 km from the shop triggered the SMS: {far_sms}")
    say("and a check-in at Roland-Garros, 6 km away, triggered nothing (outside the geofence)")

    step("11. A contact unsubscribes in one click, and gets nothing more")
    deliveries = call("GET", f"{stack.campaigns}/v1/campaigns/{campaign['id']}/deliveries", marketing,
                      params={"channel": "email", "limit": 1000})["items"]
    by_contact = {p.contact_id: p for p in expected}
    leaving = next((d for d in deliveries if d["status"] in ("sent", "delivered")
                    and by_contact[d["contact_id"]].consents["sms_marketing"] != "granted"), None)
    check(leaving is not None and bool(leaving["unsubscribe_url"]), "no email delivery with an unsubscribe_url")
    unsubscriber = by_contact[leaving["contact_id"]]
    _session().post(leaving["unsubscribe_url"], data={"List-Unsubscribe": "One-Click"}, timeout=30
                    ).raise_for_status()
    say(f"{unsubscriber.email} clicked unsubscribe (RFC 8058 one-click POST)")
    current = until("the withdrawal in identity's consent ledger", 30, lambda: (
        lambda c: c if c["current"]["email_marketing"]["status"] == "withdrawn" else None)(
        call("GET", f"{stack.identity}/v1/contacts/{unsubscriber.contact_id}/consents", compliance)))
    say(f"identity's ledger: email_marketing {current['current']['email_marketing']['status']} "
        f"(history of {len(current['history'])} records)")
    second = call("POST", f"{stack.campaigns}/v1/campaigns", marketing, 201,
                  json={**offer, "name": "Roland-Garros, last days"})
    call("POST", f"{stack.campaigns}/v1/campaigns/{second['id']}/launch", marketing, 202)
    second_url = f"{stack.campaigns}/v1/campaigns/{second['id']}/report"

    def second_sent() -> dict[str, Any] | None:
        r = call("GET", second_url, marketing)
        return r if sum(r["by_channel"].get(c, {}).get("sent", 0) for c in ("email", "sms")) == reach - 1 else None

    reach = len(by_email) + len(by_sms)
    report2 = until(f"the second campaign's {reach - 1} sends", 90, second_sent)
    theirs = call("GET", f"{stack.campaigns}/v1/campaigns/{second['id']}/deliveries", marketing,
                  params={"limit": 1000})["items"]
    theirs = [d for d in theirs if d["contact_id"] == unsubscriber.contact_id]
    check(all(d["status"] == "suppressed" for d in theirs),
          f"the unsubscribed contact still got a delivery: {theirs}")
    check(report2["suppressed"]["no_consent"] == unreachable + 1,
          f"second campaign: {report2['suppressed']['no_consent']} suppressed for no consent, expected "
          f"{unreachable + 1}")
    say(f"second campaign to the same segment: {len(by_email) + len(by_sms) - 1} sent; "
        f"{unsubscriber.first_name} {unsubscriber.last_name}: "
        + (", ".join(f"{d['channel']} {d['status']} ({d['reason']})" for d in theirs) or "no delivery at all"))

    step("12. Opens, clicks and conversions come in")
    reached = [d for d in call("GET", f"{stack.campaigns}/v1/campaigns/{campaign['id']}/deliveries", marketing,
                               params={"limit": 1000})["items"] if d["status"] in ("sent", "delivered")]
    opened = clicked = 0
    conversions: dict[str, list[float]] = {"email": [], "sms": []}
    for n, d in enumerate(reached):
        content = json.dumps(call("GET", f"{stack.campaigns}/v1/campaigns/{campaign['id']}/deliveries/{d['id']}",
                                  marketing)["content"])
        pixel = re.search(r"https?://[^\"'\s\\]+/t/o/[\w-]+", content)
        link = re.search(r"https?://[^\"'\s\\]+/t/c/[\w-]+", content)
        if pixel and n % 4 != 3:  # three in four open the email
            _session().get(pixel.group(0), timeout=30)
            opened += 1
        if link and n % 2 == 0:  # half click the offer
            check(_session().get(link.group(0), timeout=30, allow_redirects=False).status_code == 302,
                  "a tracked link does not redirect")
            clicked += 1
            if n % 4 == 0:  # and half of those buy
                value = 60.0 + 15 * (n % 7)
                call("POST", f"{stack.campaigns}/v1/conversions", crm, 201, json={
                    "contact_id": d["contact_id"], "value": value, "currency": "EUR",
                    "occurred_at": datetime.now(UTC).isoformat(), "campaign_id": campaign["id"]})
                conversions[d["channel"]].append(value)
    say(f"{opened} opens, {clicked} clicks, {sum(map(len, conversions.values()))} purchases worth "
        f"{sum(map(sum, conversions.values())):.2f} EUR")

    step("13. The report, per channel and for the segment")

    def counted() -> dict[str, Any] | None:
        r = call("GET", report_url, marketing)
        converted = {c: r["by_channel"].get(c, {}).get("converted", 0) for c in ("email", "sms")}
        return r if converted == {c: len(v) for c, v in conversions.items()} else None

    report = until("the conversions in the report", 30, counted)
    say(f"audience {report['audience']}, reach {report['reach']}, conversion rate {report['conversion_rate']:.2f}, "
        f"ROI {report['roi']:,.0f}x (revenue less cost, over cost)")
    say(f"{'channel':8} {'sent':>5} {'opened':>6} {'clicked':>7} {'converted':>9} {'revenue':>9} {'cost':>7} "
        f"{'ROI':>8}")
    for channel, row in report["by_channel"].items():
        cost, revenue = float(row["cost"] or 0), float(row["revenue"] or 0)
        roi = f"{(revenue - cost) / cost:,.0f}x" if cost else "-"
        say(f"{channel:8} {row['sent']:>5} {row['opened']:>6} {row['clicked']:>7} "
            f"{row['converted']:>9} {revenue:>9.2f} {cost:>7.3f} {roi:>8}")
        check(abs(revenue - sum(conversions.get(channel, []))) < 0.01,
              f"{channel} revenue {revenue}, expected {sum(conversions.get(channel, []))}")
    check(report["reach"] == len(by_email) + len(by_sms), f"reach {report['reach']}, expected "
          f"{len(by_email) + len(by_sms)}")
    analytics = call("GET", f"{stack.campaigns}/v1/segments/{segment['id']}/analytics", marketing)
    say(f"segment: {analytics['size']} contacts, age {analytics['age']['mean']:.1f} ± {analytics['age']['std']:.1f}, "
        f"tiers {analytics['tiers']}, conversion rate {analytics['conversion_rate']:.2f}, "
        f"revenue {analytics['revenue']:.2f}")

    step("14. Compliance: export one contact's data, erase them, verify the audit chain")
    subject = by_contact[reached[0]["contact_id"]]
    export = call("GET", f"{stack.identity}/v1/contacts/{subject.contact_id}/export", compliance)
    text = json.dumps(export)
    check(subject.email in text and subject.handle in text, "the export lacks the contact's email or handle")
    say(f"export of {subject.first_name} {subject.last_name}: {len(text):,} bytes of JSON from "
        f"{', '.join(sorted(export.get('services') or {}))}")
    erasure = call("DELETE", f"{stack.identity}/v1/contacts/{subject.contact_id}", compliance, 202)
    say(f"erasure {erasure['erasure_id']} requested: {erasure['status']}")
    done = until("the erasure completed in every service", 60, lambda: (
        lambda e: e if e["status"] == "completed" else None)(
        call("GET", f"{stack.identity}/v1/erasures/{erasure['erasure_id']}", compliance)), interval=0.5)
    say("erasure " + done["status"] + ": " + ", ".join(f"{s} {v}" for s, v in done["services"].items()))
    check(all(v == "completed" for v in done["services"].values()), f"not every service completed: {done}")
    call("GET", f"{stack.identity}/v1/contacts/{subject.contact_id}", compliance, 404)
    call("GET", f"{stack.enrichment}/v1/profiles/{subject.contact_id}", compliance, 404)
    again = call("POST", f"{stack.identity}/v1/contacts", crm, (200, 201), json={
        "crm_ref": {"system": "demo-crm", "id": f"C{subject.index:06d}-again"}, "email": subject.email})
    check(again.get("suppressed") is True, f"a re-import of the erased email is not flagged suppressed: {again}")
    say("the contact answers 404 in identity and enrichment; a re-import of their email is flagged suppressed")
    verify = call("GET", f"{stack.identity}/v1/audit/verify", compliance)
    check(verify["valid"] is True, f"the audit chain does not verify: {verify}")
    say(f"audit verify: {'valid' if verify['valid'] else 'INVALID'} ({verify['entries']:,} entries)")


# -- the stack ----------------------------------------------------------------------------------
def services() -> list[Service]:
    env = {**os.environ, "DATABASE_URL": "postgresql://unused", "BROKER_URL": "memory://",
           "LIAISON_SECRET_KEY": "unused-by-the-demo"}
    return present_services(Settings.from_env(env))


def ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def admin_key() -> str:
    if os.environ.get("LIAISON_ADMIN_KEY"):
        return os.environ["LIAISON_ADMIN_KEY"]
    for line in SECRETS.read_text().splitlines() if SECRETS.exists() else []:
        name, _, value = line.partition("=")
        if name.strip() == "LIAISON_ADMIN_KEY":
            return value.strip()
    raise StoryFailure("no admin key: set LIAISON_ADMIN_KEY (make run prints it; it is in var/secrets.env)")


def demo_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a stack the demo starts: enrichment's providers are the sandbox, so
    their rate limits (1 call a second per tenant by default, as polite to the real X as it
    should be) are raised, or enriching a few hundred contacts would take minutes. Whatever the
    operator set wins."""
    env = dict(os.environ if env is None else env)
    for provider in PROVIDERS:
        env.setdefault(f"{provider}_RATE_PER_SECOND", "500")
        env.setdefault(f"{provider}_BURST", "500")
    return env


def start_stack(urls: list[str], timeout: float) -> subprocess.Popen[bytes]:
    """`make run`'s script in its own session (as .ci/run starts it), its log in var/demo-run.log."""
    log = (ROOT / "var").joinpath("demo-run.log")
    log.parent.mkdir(exist_ok=True)
    print(f"No stack answers: starting `make run` (log: {log}) ...", flush=True)
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "scripts.run"], cwd=ROOT, stdout=out, env=demo_env(),
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not all(ready(u) for u in urls):
        if process.poll() is not None:
            raise StoryFailure(f"`make run` exited with {process.returncode}; see {log}")
        if time.monotonic() > deadline:
            stop_stack(process)
            raise StoryFailure(f"the stack did not answer /readyz within {timeout:.0f} s; see {log}")
        time.sleep(0.5)
    return process


def stop_stack(process: subprocess.Popen[bytes]) -> None:
    """SIGINT to its process group, as Ctrl-C would: it stops the services, then the embedded servers."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    print(f"\nThe stack the demo started is stopped (exit {process.returncode}).", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=10_000, help="contacts in the CRM export (default 10,000)")
    parser.add_argument("--start-stack", action="store_true",
                        help="start `make run` when no stack answers, and stop it at the end")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the stack's /readyz")
    args = parser.parse_args()
    if args.contacts < 100:
        parser.error("--contacts: at least 100")
    present = {s.name: s.url for s in services()}
    sandbox = sandbox_service(os.environ).url
    urls = [*present.values(), sandbox]
    process = None
    try:
        if args.start_stack and not all(ready(u) for u in urls):
            process = start_stack(urls, args.timeout)
        missing = [u for u in urls if not ready(u)]
        check(not missing, f"not ready: {', '.join(missing)} (start the stack with `make run`, or use `make demo`)")
        check({"identity", "enrichment", "campaigns"} <= set(present), "the demo needs all three services")
        stack = Stack(present["identity"], present["enrichment"], present["campaigns"], sandbox, admin_key())
        print(f"Liaison demo: {args.contacts:,} contacts against identity {stack.identity}, enrichment "
              f"{stack.enrichment}, campaigns {stack.campaigns}, sandbox {stack.sandbox}", flush=True)
        play(stack, args.contacts)
    except (StoryFailure, requests.RequestException) as exc:
        print(f"\nDEMO FAIL at step \"{_step}\": {exc}", flush=True)
        return 1
    finally:
        if process is not None:
            stop_stack(process)
    print(f"\nDEMO PASS: every step went as the story says, in {time.monotonic() - _started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
