"""The provider sandbox, spoken to by the real enrichment adapters over real HTTP, and the way
`make run` points the providers at it (scripts/run.py)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict

import pytest
import requests
from werkzeug.serving import make_server

from sandbox.app import create_app
from sandbox.synthetic import PLACES, audience
from scripts.run import (
    DEFAULT_SANDBOX_URL,
    SANDBOX_CREDENTIAL,
    Service,
    procfile_processes,
    sandbox_env,
    sandbox_service,
    sandboxed_networks,
)
from services.enrichment.influence import TIERS, tier_for
from services.enrichment.providers import adapters, registry
from services.enrichment.providers.http import Adapter, BadCredentials, NotFound, ProfileData, ProviderError, Subject
from shared.settings import SettingsError

NETWORKS = ("facebook", "fullcontact", "instagram", "x")
COUNTRIES = {place.country_code for place in PLACES}
# Our own budget and retries would only slow the tests down: the sandbox never throttles.
TUNABLES = {f"{prefix}_{name}": value for prefix in ("X_API", "INSTAGRAM", "FACEBOOK", "FULLCONTACT")
            for name, value in (("RATE_PER_SECOND", "1000"), ("BURST", "1000"), ("MAX_ATTEMPTS", "1"))}


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    server = make_server("127.0.0.1", 0, create_app({}), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="sandbox", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def providers(sandbox_url: str) -> dict[str, Adapter]:
    """The adapters configured as `make run` configures them when the operator set nothing."""
    return adapters(sandbox_env(TUNABLES, sandbox_url))


def subject(network: str, handle: str) -> Subject:
    if network == "fullcontact":
        return Subject(email=f"{handle}@example.com")
    return Subject(handles={network: handle})


def same(a: ProfileData, b: ProfileData) -> bool:
    return {**asdict(a), "fetched_at": None} == {**asdict(b), "fetched_at": None}


# ---------------------------------------------------------------------------------------------
# The adapters against the sandbox


def test_make_run_configures_every_provider_for_the_sandbox(providers):
    assert sorted(providers) == list(NETWORKS)


def test_x_profile(providers):
    profile = providers["x"].fetch(subject("x", "camille_runs"))
    assert profile.handle == "camille_runs"
    assert profile.external_id and profile.external_id.isdigit()
    assert profile.name and profile.bio
    assert profile.followers > 0 and profile.following > 0 and profile.posts > 0 and profile.listed is not None
    assert profile.account_created_at.year >= 2008
    assert profile.location.split(", ")[0] in {place.city for place in PLACES}


def test_instagram_profile(providers):
    profile = providers["instagram"].fetch(subject("instagram", "chef.lyon"))
    assert profile.handle == "chef.lyon"
    assert profile.external_id.startswith("178414")
    assert profile.name and profile.bio
    assert profile.followers > 0 and profile.following > 0 and profile.posts > 0


def test_facebook_profile(providers):
    profile = providers["facebook"].fetch(subject("facebook", "bistro.paris"))
    assert profile.handle == "bistro.paris"
    assert profile.followers > 0
    assert profile.city in {place.city for place in PLACES}
    assert profile.country in COUNTRIES  # the Graph API's country name, mapped to ISO alpha-2 by the adapter
    assert profile.category and profile.bio


def test_fullcontact_profile(providers):
    profile = providers["fullcontact"].fetch(subject("fullcontact", "jeanne.martin"))
    assert profile.name and profile.age_range and profile.title and profile.organization
    assert profile.city in {place.city for place in PLACES}
    assert profile.country in COUNTRIES
    assert 2 <= len(profile.interests) <= 5


def test_fullcontact_asked_about_an_x_handle_describes_the_x_account_s_person(providers):
    x = providers["x"].fetch(subject("x", "Hugo_Cooks"))
    person = providers["fullcontact"].fetch(Subject(handles={"x": "@Hugo_Cooks"}))
    assert person.name == x.name
    assert x.location.startswith(f"{person.city}, ")


@pytest.mark.parametrize("network", NETWORKS)
def test_the_same_handle_gets_the_same_answer(providers, network):
    first = providers[network].fetch(subject(network, "steadyhandle"))
    again = providers[network].fetch(subject(network, "steadyhandle"))
    assert same(first, again)
    # Handles ignore case, as X's and Instagram's do.
    assert providers[network].fetch(subject(network, "SteadyHandle")).name == first.name


@pytest.mark.parametrize("network", NETWORKS)
def test_different_handles_get_different_people(providers, network):
    answers = [providers[network].fetch(subject(network, f"someone{i}")) for i in range(5)]
    assert len({(a.external_id, a.name, a.followers, a.age_range, a.city) for a in answers}) == 5


@pytest.mark.parametrize("network", NETWORKS)
def test_a_handle_starting_with_unknown_is_not_found(providers, network):
    with pytest.raises(NotFound):
        providers[network].fetch(subject(network, "unknown_42"))


def test_fullcontact_unknown_x_handle_is_not_found(providers):
    with pytest.raises(NotFound):
        providers["fullcontact"].fetch(Subject(handles={"x": "unknown_7"}))


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("token", ["invalid-token", "expired-2024"])
def test_refused_credentials_are_bad_credentials(providers, network, token):
    adapter = providers[network]
    credentials = {key: token for key in adapter.credential_env} | (
        {"business_account_id": "17841400000000000"} if network == "instagram" else {}
    )
    with pytest.raises(BadCredentials):
        adapter.fetch(subject(network, "someone"), credentials=credentials)


def test_missing_credentials_are_refused_in_each_provider_s_shape(sandbox_url):
    x = requests.get(f"{sandbox_url}/2/users/by/username/someone", timeout=5)
    assert x.status_code == 401 and x.json()["title"] == "Unauthorized"
    graph = requests.get(f"{sandbox_url}/v19.0/someone", params={"fields": "id,name"}, timeout=5)
    assert graph.status_code == 400
    assert graph.json()["error"]["code"] == 190 and graph.json()["error"]["type"] == "OAuthException"
    fullcontact = requests.post(f"{sandbox_url}/v3/person.enrich", json={"email": "a@example.com"}, timeout=5)
    assert fullcontact.status_code == 401


def test_x_answers_a_username_it_would_refuse_with_its_invalid_request_problem(providers, sandbox_url):
    answer = requests.get(f"{sandbox_url}/2/users/by/username/jean.dupont",
                          headers={"Authorization": "Bearer t"}, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["type"] == "https://api.twitter.com/2/problems/invalid-request"
    with pytest.raises(ProviderError):
        providers["x"].fetch(subject("x", "jean.dupont"))


def test_x_sends_its_rate_limit_headers(sandbox_url):
    answer = requests.get(f"{sandbox_url}/2/users/by/username/someone", params={"user.fields": "public_metrics"},
                          headers={"Authorization": "Bearer t"}, timeout=5)
    assert int(answer.headers["x-rate-limit-limit"]) > int(answer.headers["x-rate-limit-remaining"]) >= 0
    assert int(answer.headers["x-rate-limit-reset"]) > time.time()
    assert set(answer.json()["data"]) == {"id", "name", "username", "public_metrics"}  # only the fields asked


def test_graph_returns_only_the_fields_asked_for(sandbox_url):
    page = requests.get(f"{sandbox_url}/v19.0/bistro.paris",
                        params={"fields": "name,fan_count", "access_token": "t"}, timeout=5).json()
    assert set(page) == {"id", "name", "fan_count"}
    discovery = requests.get(f"{sandbox_url}/v19.0/17841400000000000", params={
        "fields": "business_discovery.username(chef.lyon){followers_count}", "access_token": "t"}, timeout=5).json()
    assert discovery["id"] == "17841400000000000"
    assert set(discovery["business_discovery"]) == {"followers_count"}


# ---------------------------------------------------------------------------------------------
# The synthetic data and the app's knobs


def test_every_influence_tier_turns_up_mostly_small_accounts():
    tiers = Counter(tier_for(audience("x", f"handle_{i}").followers) for i in range(2_000))
    assert set(tiers) == set(TIERS)
    assert tiers["none"] + tiers["nano"] > 1_000  # mostly small
    assert tiers["none"] > tiers["nano"] > tiers["mega"] > 50


def test_latency_knob_slows_every_answer():
    client = create_app({"SANDBOX_LATENCY_MS": "60"}).test_client()
    started = time.monotonic()
    assert client.get("/readyz").status_code == 200
    assert time.monotonic() - started >= 0.06


@pytest.mark.parametrize("value", ["slow", "-5"])
def test_a_bad_latency_is_refused_at_start(value):
    with pytest.raises(ValueError, match="SANDBOX_LATENCY_MS"):
        create_app({"SANDBOX_LATENCY_MS": value})


# ---------------------------------------------------------------------------------------------
# scripts/run.py: how `make run` points the providers at the sandbox

SANDBOX = "http://127.0.0.1:8009"


def test_unconfigured_providers_are_pointed_at_the_sandbox():
    given = {"PATH": "/bin"}
    env = sandbox_env(given, SANDBOX)

    assert given == {"PATH": "/bin"}  # a copy: the input is not changed
    assert env["X_API_BASE_URL"] == SANDBOX
    assert env["FULLCONTACT_BASE_URL"] == SANDBOX
    assert env["INSTAGRAM_GRAPH_BASE_URL"] == f"{SANDBOX}/v19.0"  # the real path, version and all
    assert env["FACEBOOK_GRAPH_BASE_URL"] == f"{SANDBOX}/v19.0"
    for adapter in registry().values():
        assert all(env[var] == SANDBOX_CREDENTIAL for var in adapter.credential_env.values())
    assert sorted(sandboxed_networks(env, SANDBOX)) == list(NETWORKS)


def test_a_provider_the_operator_configured_is_left_alone():
    env = sandbox_env({"X_API_BASE_URL": "https://api.x.com", "FULLCONTACT_API_KEY": "real-key"}, SANDBOX)

    assert env["X_API_BASE_URL"] == "https://api.x.com"
    assert "X_API_BEARER_TOKEN" not in env  # not filled with the sandbox's: it would go to the real X
    assert env["FULLCONTACT_API_KEY"] == "real-key"  # a real key means the real FullContact
    assert "FULLCONTACT_BASE_URL" not in env
    assert sorted(sandboxed_networks(env, SANDBOX)) == ["facebook", "instagram"]


def test_sandbox_url_comes_from_sandbox_url():
    assert sandbox_service({}).url == DEFAULT_SANDBOX_URL
    assert sandbox_service({"SANDBOX_URL": "http://127.0.0.1:9109/"}).bind == "127.0.0.1:9109"
    with pytest.raises(SettingsError, match="SANDBOX_URL"):
        sandbox_service({"SANDBOX_URL": "ftp://127.0.0.1:9109"})


def test_the_procfile_runs_the_sandbox_on_its_bind():
    processes = procfile_processes([Service("identity", "http://127.0.0.1:8001")],
                                   values={"sandbox_bind": "127.0.0.1:9109"})
    sandbox = next(p for p in processes if p.name == "sandbox")
    assert "--bind 127.0.0.1:9109" in sandbox.command and "'sandbox.app:create_app()'" in sandbox.command
    assert any(p.name == "identity-web" and "127.0.0.1:8001" in p.command for p in processes)
