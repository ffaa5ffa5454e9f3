"""How identity asks another service for its part of an access export (outbound HTTP faked with
`responses`)."""

from __future__ import annotations

import pytest
import requests
import responses

from services.identity import export
from shared.settings import Settings

PART = export.RemotePart("enrichment", "http://enrichment.test/v1/profiles/c1/export")
HEADERS = {"Authorization": "Bearer lsn_x"}


@pytest.fixture(autouse=True)
def no_wait(monkeypatch):
    monkeypatch.setattr(export, "RETRY_WAIT", 0)


def test_the_other_services_endpoints_follow_the_settings():
    settings = Settings.from_env({
        "DATABASE_URL": "postgresql://u@h/db", "BROKER_URL": "amqp://h//", "LIAISON_SECRET_KEY": "s" * 32,
        "ENRICHMENT_URL": "http://enrichment:9000/", "CAMPAIGNS_URL": "https://campaigns.example",
        "WEBHOOKS_URL": "https://webhooks.example/"})
    assert export.remote_parts(settings, "c1") == [
        export.RemotePart("enrichment", "http://enrichment:9000/v1/profiles/c1/export"),
        export.RemotePart("campaigns", "https://campaigns.example/v1/campaigns/contacts/c1/export"),
        export.RemotePart("webhooks", "https://webhooks.example/v1/webhooks/contacts/c1/export"),
    ]


@responses.activate
def test_a_part_is_the_services_json_and_404_is_an_empty_part():
    responses.add(responses.GET, PART.url, json={"a": 1})
    assert export.fetch_part(PART, HEADERS) == {"a": 1}
    assert responses.calls[0].request.headers["Authorization"] == "Bearer lsn_x"
    responses.replace(responses.GET, PART.url, status=404)
    assert export.fetch_part(PART, HEADERS) == {}


@responses.activate
def test_a_5xx_or_a_refused_connection_is_asked_again_once():
    responses.add(responses.GET, PART.url, status=502)
    responses.add(responses.GET, PART.url, json={"a": 1})
    assert export.fetch_part(PART, HEADERS) == {"a": 1}
    assert len(responses.calls) == 2


@pytest.mark.parametrize(("answer", "reason", "calls"), [
    ({"status": 500}, "answered 500 (2 attempts)", 2),
    ({"body": requests.ConnectionError("refused")}, "could not be reached (2 attempts)", 2),
    ({"body": requests.ReadTimeout("slow")}, "did not answer in time (2 attempts)", 2),
    ({"status": 403}, "answered 403", 1),
    ({"body": "<html>", "status": 200}, "answered something that is not JSON", 1),
    ({"json": [1, 2]}, "answered JSON that is not an object", 1),
])
@responses.activate
def test_a_part_that_cannot_be_had_is_unavailable_with_its_reason(answer, reason, calls):
    responses.add(responses.GET, PART.url, **answer)
    with pytest.raises(export.PartUnavailable, match=reason.replace("(", r"\(").replace(")", r"\)")):
        export.fetch_part(PART, HEADERS)
    assert len(responses.calls) == calls


@responses.activate
def test_every_service_is_asked_and_each_failure_named():
    other = export.RemotePart("campaigns", "http://campaigns.test/v1/campaigns/contacts/c1/export")
    responses.add(responses.GET, PART.url, json={"a": 1})
    responses.add(responses.GET, other.url, body=requests.ConnectionError("refused"))
    found, failed = export.fetch_parts([PART, other], HEADERS)
    assert found == {"enrichment": {"a": 1}}
    assert failed == {"campaigns": "could not be reached (2 attempts)"}
