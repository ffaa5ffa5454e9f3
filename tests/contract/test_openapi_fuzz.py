"""Schemathesis against each service's OpenAPI document, in-process on the WSGI apps.

Every operation of identity, enrichment, campaigns and webhooks gets a bounded number of generated requests,
valid ones and invalid ones, sent with a key that holds every scope (the admin key on the admin
routes). No answer may be a 5xx, and each must have a documented status code, a documented
content type and a body that matches the documented schema: clients generate code from these
documents, so a wrong document is a bug like a wrong answer. Generation is derandomized, so CI
sends the same requests on every run.

Path parameters are replaced, half the time, by ids of records that exist (a contact, a segment,
a campaign, a trigger, a webhook endpoint and its delivery of the fuzzing tenant), so that the
success paths are reached, not only the 404s; the documents' examples are sent too, for the
bodies that random data rarely gets right.

Each operation runs as its own Hypothesis test (schemathesis' `from_fixture` integration does
not run on pytest 9.2), and a failure does not stop the others: the test reports every distinct
one at the end, each with the request that found it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from kombu import Connection
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core import NOT_SET
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import make_tenant
from tests.services import three_services
from tests.serving import served

MAX_EXAMPLES = 30  # per operation and kind (valid, invalid requests): about a minute in all on two cores
SEED = 20261123
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# Schemathesis' own strategies draw from `random`; Hypothesis warns about it, nothing for us to do.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

# Routes that only the operator's admin key may call; every other route gets the tenant's key.
ADMIN_ROUTES = re.compile(r"^/v1/(tenants|api-keys/\{key_id\})")

FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: every failure is collected, none raised
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


@pytest.fixture(scope="module")
def exports_reach_the_services(identity_app, enrichment_app, campaigns_app, webhooks_app) -> Iterator[None]:
    """identity's export asks the other services over HTTP: serve them, and point identity at
    them for this module, so that an export answers 200 (not the 502 of services that are down)."""
    svc = identity_app.extensions["liaison"]
    before = svc.settings
    with served(enrichment_app) as enrichment_url, served(campaigns_app) as campaigns_url, \
            served(webhooks_app) as webhooks_url:
        svc.settings = replace(before, enrichment_url=enrichment_url, campaigns_url=campaigns_url,
                               webhooks_url=webhooks_url)
        try:
            yield
        finally:
            svc.settings = before


@pytest.fixture(scope="module")
def fuzz_world(identity_app, campaigns_app, webhooks_app, admin, exports_reach_the_services) -> dict[str, Any]:
    """The fuzzing tenant, a key with every scope, one contact, segment, campaign, trigger, webhook
    endpoint (on this machine: nothing listens there) with a delivery (a ping), and
    a second contact that only the DELETE operations get (so that erasing it early in the run
    does not turn the other operations' success paths into 404s)."""
    identity, campaigns = identity_app.test_client(), campaigns_app.test_client()
    tenant = make_tenant(identity, admin, "Fuzz")
    key = identity.post(f"/v1/tenants/{tenant.id}/api-keys",
                        json={"name": "fuzz", "scopes": ["crm", "marketing", "compliance"]}, headers=admin)
    assert key.status_code == 201, key.json
    headers = {"Authorization": f"Bearer {key.json['key']}"}
    contacts = [identity.post("/v1/contacts", json={"crm_ref": {"system": "hubspot", "id": f"fuzz-{n}"},
                                                    "email": f"fuzz{n}@example.com", "first_name": "Fuzz"},
                              headers=headers) for n in (1, 2)]
    assert [c.status_code for c in contacts] == [201, 201], [c.json for c in contacts]
    segment = campaigns.post("/v1/segments", json={"name": "France", "rules": {"all": [
        {"field": "country", "op": "eq", "value": "FR"}]}}, headers=headers)
    assert segment.status_code == 201, segment.json
    campaign = campaigns.post("/v1/campaigns", json={
        "name": "Fuzz", "segment_id": segment.json["id"], "channels": ["email"],
        "content": {"email": {"subject": "Hi", "body": "Hello"}}}, headers=headers)
    assert campaign.status_code == 201, campaign.json
    trigger = campaigns.post("/v1/triggers", json={"name": "Welcome", "event": "contact.created", "channel": "email",
                                                   "content": {"subject": "Hi", "body": "Hello"}}, headers=headers)
    assert trigger.status_code == 201, trigger.json
    webhooks = webhooks_app.test_client()
    hook = webhooks.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/fuzz", "event_types": ["*"]},
                         headers=headers)
    assert hook.status_code == 201, hook.json
    ping = webhooks.post(f"/v1/webhooks/{hook.json['id']}/ping", headers=headers)
    assert ping.status_code == 202, ping.json
    ids = {"contact_id": contacts[0].json["id"], "segment_id": segment.json["id"],
           "campaign_id": campaign.json["id"], "trigger_id": trigger.json["id"], "tenant_id": tenant.id,
           "network": "x", "webhook_id": hook.json["id"], "delivery_id": ping.json["id"]}
    return {"headers": headers, "admin": admin, "ids": ids,
            "disposable": {**ids, "contact_id": contacts[1].json["id"]}}


def load(app, world: dict[str, Any]) -> Any:
    config = SchemathesisConfig.from_dict({"seed": SEED, "generation": {"deterministic": True}})
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> st.SearchStrategy:
        """Half the time, ids this tenant has instead of random ones."""
        known = world["disposable" if context.operation.method.upper() == "DELETE" else "ids"]
        if not path_parameters or not any(name in known for name in path_parameters):
            return st.just(path_parameters)
        existing = {name: known.get(name, value) for name, value in path_parameters.items()}
        return st.sampled_from([path_parameters, existing])

    return schema


def describe(case: Any, response: Any, failures: list[Failure]) -> tuple[str, str]:
    """A distinct failure's key (operation and failure kinds) and its report, with the request."""
    kinds = sorted({f"{failure.code} {failure.title}" for failure in failures})
    body = case.body if case.body is not NOT_SET else None
    request = (f"{case.method} {case.formatted_path} query={case.query} headers="
               f"{ {k: v for k, v in (case.headers or {}).items() if k.lower() != 'authorization'} }"
               f" body={json.dumps(body, default=repr)[:300]}")
    answer = f"{response.status_code} {response.headers.get('Content-Type')} {response.text[:300]}"
    details = "\n      ".join(failure.message.replace("\n", "\n      ")[:600] for failure in failures)
    return (f"{case.operation.label} {kinds}",
            f"{case.operation.label}: {', '.join(kinds)}\n    request: {request}\n    response: {answer}\n"
            f"      {details}")


def send(strategy: st.SearchStrategy, headers: dict[str, str], found: dict[str, str]) -> int:
    """The requests `strategy` generates, each answer checked; adds the failures to `found`."""
    sent = 0

    @FUZZ_SETTINGS
    @given(case=strategy)
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            found.setdefault(*describe(case, response, list(group.exceptions)))
        except Failure as failure:
            found.setdefault(*describe(case, response, [failure]))

    run()
    return sent


def fuzz(app, world: dict[str, Any]) -> tuple[int, int, dict[str, str]]:
    """Every operation of `app`'s document: its examples, then generated valid and invalid
    requests. Returns the operations and requests sent, and the distinct failures."""
    schema = load(app, world)
    found: dict[str, str] = {}
    operations = sent = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            found[f"document {result.err()}"] = f"the document is invalid: {result.err()}"
            continue
        operation = result.ok()
        operations += 1
        headers = world["admin"] if ADMIN_ROUTES.search(operation.path) else world["headers"]
        examples = operation.get_strategies_from_examples()
        phases = [("examples", st.one_of(examples))] if examples else []
        phases += [(mode.value, operation.as_strategy(generation_mode=mode))
                   for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
        for phase, strategy in phases:
            try:
                sent += send(strategy, headers, found)
            except Unsatisfiable:
                # Nothing invalid can be said in this operation's parameters (a free-form string
                # in the path, no body): the valid requests cover it.
                assert phase == "negative", f"{operation.label}: no {phase} request can be generated"
    return operations, sent, found


@pytest.mark.parametrize("service", ["identity", "enrichment", "campaigns", "webhooks"])
def test_every_operation_answers_as_documented(service: str, request: pytest.FixtureRequest,
                                               fuzz_world: dict[str, Any]) -> None:
    app = request.getfixturevalue(f"{service}_app")
    operations, sent, failures = fuzz(app, fuzz_world)
    assert operations >= 5 and sent > operations * 2, (operations, sent)  # the documents lost their paths
    assert not failures, f"{len(failures)} distinct failures in {service}'s answers:\n" + "\n".join(
        failures.values())


def test_what_the_fuzzing_stored_flows_through_the_consumers(settings, identity_app, enrichment_app,
                                                             campaigns_app, webhooks_app) -> None:
    """The events the requests above caused (contacts with odd attributes, consents, erasures, a
    launch) are published and handled at the first attempt: nothing waits in a retry queue or
    lies in the dead letters. It also leaves no event of random data for later tests' relays."""
    with three_services(settings, identity_app, enrichment_app, campaigns_app, webhooks_app=webhooks_app) as bus:
        bus.sync()
    with Connection(settings.broker_url) as connection:
        channel = connection.default_channel
        waiting = {queue: channel.queue_declare(queue, passive=True).message_count
                   for name in ("identity", "enrichment", "campaigns", "webhooks")
                   for queue in (f"{settings.bus_prefix}{name}.retry", f"{settings.bus_prefix}{name}.dead")}
    assert not any(waiting.values()), waiting
