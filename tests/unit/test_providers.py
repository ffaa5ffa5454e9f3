"""Provider adapters against recorded shapes of the real APIs (X v2, Instagram and Facebook Graph,
FullContact v3), served by `responses`: no network, and a fake clock so nothing really sleeps."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest
import requests
import responses
from responses import matchers

from services.enrichment.providers import adapters, registry
from services.enrichment.providers.facebook import FacebookAdapter
from services.enrichment.providers.fullcontact import FullContactAdapter
from services.enrichment.providers.http import (
    BadCredentials,
    CircuitBreaker,
    NotConfigured,
    NotFound,
    ProviderConfig,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    Subject,
)
from services.enrichment.providers.instagram import InstagramAdapter
from services.enrichment.providers.x import XAdapter
from shared.settings import SettingsError

NOW = 1_763_884_800.0  # 2025-11-23T08:00:00Z

X_USER_URL = "https://api.x.com/2/users/by/username/XDevelopers"
X_USER = {
    "data": {
        "id": "2244994945",
        "name": "Developers",
        "username": "XDevelopers",
        "created_at": "2013-12-14T04:35:55.000Z",
        "description": "The voice of the X Developer Platform",
        "location": "127.0.0.1",
        "public_metrics": {
            "followers_count": 513958,
            "following_count": 2039,
            "tweet_count": 3635,
            "listed_count": 1672,
            "like_count": 2107,
        },
    }
}
X_NOT_FOUND = {
    "errors": [
        {
            "value": "nosuchuser_x1",
            "detail": "Could not find user with username: [nosuchuser_x1].",
            "title": "Not Found Error",
            "resource_type": "user",
            "parameter": "username",
            "resource_id": "nosuchuser_x1",
            "type": "https://api.twitter.com/2/problems/resource-not-found",
        }
    ]
}
X_TOO_MANY = {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429}
X_UNAUTHORIZED = {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}


class FakeClock:
    def __init__(self, start: float = NOW):
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def make(cls, clock, credentials=None, **config):
    defaults = {"rate_per_second": 1000.0, "burst": 1000}
    config = ProviderConfig(
        network=cls.network,
        base_url=cls.default_base_url,
        credentials=credentials if credentials is not None else {k: f"{k}-1" for k in cls.credential_env},
        **(defaults | config),
    )
    return cls(config, clock=clock, rng=random.Random(7))


def x_subject(handle: str = "XDevelopers") -> Subject:
    return Subject(handles={"x": handle})


# ---------------------------------------------------------------------------------------------
# Mapping each provider's answer


def test_x_user_lookup_maps_public_metrics_with_provenance(api, clock):
    api.get(
        X_USER_URL,
        json=X_USER,
        match=[
            matchers.query_param_matcher({"user.fields": "public_metrics,description,location,created_at"}),
            matchers.header_matcher({"Authorization": "Bearer bearer_token-1"}),
        ],
    )
    profile = make(XAdapter, clock).fetch(x_subject())

    assert (profile.followers, profile.following, profile.posts, profile.listed) == (513958, 2039, 3635, 1672)
    assert profile.location == "127.0.0.1"
    assert profile.bio == "The voice of the X Developer Platform"
    assert profile.external_id == "2244994945"
    assert profile.account_created_at == datetime(2013, 12, 14, 4, 35, 55, tzinfo=UTC)
    followers = profile.sourced()["followers"]
    assert (followers.value, followers.network) == (513958, "x")
    assert followers.fetched_at == datetime.fromtimestamp(NOW, UTC)
    assert "age_range" not in profile.sourced()  # what X did not say is not claimed


# Instagram Graph API business discovery, as its documentation shows it.
IG_BLUEBOTTLE = {
    "business_discovery": {
        "id": "17841401441775531",
        "username": "bluebottle",
        "name": "Blue Bottle Coffee",
        "biography": "Delicious coffee from Oakland.",
        "followers_count": 267788,
        "follows_count": 1230,
        "media_count": 1205,
    },
    "id": "17841405309211844",
}


def test_instagram_business_discovery_maps_counts(api, clock):
    api.get(
        "https://graph.facebook.com/v19.0/17841405309211844",
        json=IG_BLUEBOTTLE,
        match=[
            matchers.query_param_matcher(
                {
                    "fields": "business_discovery.username(bluebottle)"
                    "{id,username,name,biography,followers_count,follows_count,media_count}",
                    "access_token": "ig-token",
                }
            )
        ],
    )
    adapter = make(
        InstagramAdapter, clock, credentials={"access_token": "ig-token", "business_account_id": "17841405309211844"}
    )
    profile = adapter.fetch(Subject(handles={"instagram": "bluebottle"}))

    assert (profile.followers, profile.following, profile.posts) == (267788, 1230, 1205)
    assert profile.name == "Blue Bottle Coffee"
    assert profile.bio == "Delicious coffee from Oakland."
    assert profile.sourced()["followers"].network == "instagram"


def test_facebook_page_maps_followers_and_location(api, clock):
    api.get(
        "https://graph.facebook.com/v19.0/bluebottlecoffee",
        json={
            "id": "129399430436",
            "name": "Blue Bottle Coffee",
            "username": "bluebottlecoffee",
            "fan_count": 120311,
            "followers_count": 125001,
            "location": {
                "city": "Oakland",
                "country": "United States",
                "latitude": 37.8,
                "longitude": -122.27,
                "state": "CA",
                "street": "300 Webster St",
                "zip": "94607",
            },
            "about": "Coffee roaster and retailer.",
            "category": "Coffee Shop",
        },
        match=[
            matchers.query_param_matcher(
                {
                    "fields": "id,name,username,fan_count,followers_count,location,about,category",
                    "access_token": "access_token-1",
                }
            )
        ],
    )
    profile = make(FacebookAdapter, clock).fetch(Subject(handles={"facebook": "bluebottlecoffee"}))

    assert profile.followers == 125001
    assert (profile.city, profile.country) == ("Oakland", "US")  # ISO 3166-1 alpha-2
    assert profile.bio == "Coffee roaster and retailer."
    assert profile.category == "Coffee Shop"


FULLCONTACT_PERSON = {
    "fullName": "Bart Lorang",
    "ageRange": "30-39",
    "gender": "Male",
    "location": "Denver, Colorado, United States",
    "title": "Co-Founder & Managing Director",
    "organization": "V1.vc",
    "twitter": "https://twitter.com/lorangb",
    "linkedin": "https://www.linkedin.com/in/bartlorang",
    "bio": "CEO & Co-Founder of @FullContactAPI",
    "avatar": "https://img.fullcontact.com/static/bart.png",
    "website": "http://bartlorang.com",
    "details": {
        "name": {"given": "Bart", "family": "Lorang", "full": "Bart Lorang"},
        "age": {"range": "30-39", "value": 37},
        "gender": "Male",
        "emails": [],
        "phones": [],
        "profiles": {"twitter": {"username": "lorangb", "url": "https://twitter.com/lorangb", "service": "twitter"}},
        "locations": [
            {
                "city": "Denver",
                "region": "Colorado",
                "regionCode": "CO",
                "country": "United States",
                "countryCode": "US",
                "formatted": "Denver, Colorado, United States",
            }
        ],
        "employment": [
            {"name": "V1.vc", "domain": "v1.vc", "current": True, "title": "Co-Founder & Managing Director"}
        ],
        "interests": [
            {"name": "Technology", "id": "127", "affinity": "HIGH", "parentIds": []},
            {"name": "Venture Capital", "id": "473", "affinity": "MEDIUM", "parentIds": ["127"]},
        ],
    },
    "updated": "2024-02-27",
}


def test_fullcontact_person_enrich_maps_demographics(api, clock):
    api.post(
        "https://api.fullcontact.com/v3/person.enrich",
        json=FULLCONTACT_PERSON,
        match=[
            matchers.json_params_matcher({"email": "bart@fullcontact.com"}),
            matchers.header_matcher({"Authorization": "Bearer api_key-1"}),
        ],
    )
    profile = make(FullContactAdapter, clock).fetch(Subject(email="bart@fullcontact.com"))

    assert profile.age_range == "30-39"
    assert (profile.city, profile.country) == ("Denver", "US")  # ISO 3166-1 alpha-2
    assert profile.title == "Co-Founder & Managing Director"
    assert profile.organization == "V1.vc"
    assert profile.interests == ("Technology", "Venture Capital")
    assert profile.sourced()["interests"].network == "fullcontact"


def test_fullcontact_matches_on_the_x_handle_when_there_is_no_email_or_phone(api, clock):
    api.post(
        "https://api.fullcontact.com/v3/person.enrich",
        json=FULLCONTACT_PERSON,
        match=[matchers.json_params_matcher({"profiles": [{"service": "twitter", "username": "lorangb"}]})],
    )
    adapter = make(FullContactAdapter, clock)
    subject = Subject(handles={"x": "@lorangb", "instagram": "bart"})

    assert adapter.applies(subject)
    assert adapter.fetch(subject).age_range == "30-39"
    assert not adapter.applies(Subject(handles={"instagram": "bart"}))  # FullContact takes no Instagram


# ---------------------------------------------------------------------------------------------
# No such person


def test_x_unknown_username_is_not_found_and_not_retried(api, clock):
    api.get("https://api.x.com/2/users/by/username/nosuchuser_x1", json=X_NOT_FOUND)
    with pytest.raises(NotFound, match="Could not find user"):
        make(XAdapter, clock).fetch(x_subject("nosuchuser_x1"))
    assert len(api.calls) == 1


def test_a_handle_x_would_refuse_is_not_found_without_a_call(api, clock):
    # X answers 400 to a username outside its pattern; a Facebook-style "jean.dupont" is no X user.
    for handle in ("jean.dupont", "a_name_longer_than_15", "with space"):
        with pytest.raises(NotFound, match="is not an X username"):
            make(XAdapter, clock).fetch(x_subject(handle))
    assert len(api.calls) == 0


def test_fullcontact_404_is_no_match(api, clock):
    api.post(
        "https://api.fullcontact.com/v3/person.enrich", status=404, json={"status": 404, "message": "Profile not found"}
    )
    with pytest.raises(NotFound):
        make(FullContactAdapter, clock).fetch(Subject(phone="+13035551234"))
    assert len(api.calls) == 1


def test_instagram_personal_or_unknown_account_is_not_found(api, clock):
    api.get(
        "https://graph.facebook.com/v19.0/business_account_id-1",
        status=400,
        json={
            "error": {
                "message": "Invalid user id",
                "type": "OAuthException",
                "code": 110,
                "error_subcode": 2207013,
                "is_transient": False,
                "error_user_title": "Cannot find User",
                "error_user_msg": "The user with username: nosuchbiz cannot be found.",
                "fbtrace_id": "AbCdEf123",
            }
        },
    )
    with pytest.raises(NotFound):
        make(InstagramAdapter, clock).fetch(Subject(handles={"instagram": "nosuchbiz"}))
    assert len(api.calls) == 1


def test_facebook_unknown_page_is_not_found(api, clock):
    api.get(
        "https://graph.facebook.com/v19.0/nosuchpage",
        status=404,
        json={
            "error": {
                "message": "(#803) Some of the aliases you requested do not exist: nosuchpage",
                "type": "OAuthException",
                "code": 803,
                "fbtrace_id": "AbCdEf123",
            }
        },
    )
    with pytest.raises(NotFound):
        make(FacebookAdapter, clock).fetch(Subject(handles={"facebook": "nosuchpage"}))


# ---------------------------------------------------------------------------------------------
# Rate limits: the provider's and our own


def test_x_429_waits_until_the_reset_header_then_succeeds(api, clock):
    reset = int(NOW) + 12
    api.get(X_USER_URL, status=429, json=X_TOO_MANY, headers={"x-rate-limit-reset": str(reset)})
    api.get(X_USER_URL, json=X_USER)

    profile = make(XAdapter, clock).fetch(x_subject())

    assert profile.followers == 513958
    assert len(api.calls) == 2
    assert clock.sleeps == [12.0]  # slept until the reset the provider named, not a guess


def test_x_429_with_a_distant_reset_raises_rate_limited_with_that_time(api, clock):
    reset = int(NOW) + 900  # X's 15-minute window: too long to hold a worker
    api.get(X_USER_URL, status=429, json=X_TOO_MANY, headers={"x-rate-limit-reset": str(reset)})

    with pytest.raises(RateLimited) as caught:
        make(XAdapter, clock).fetch(x_subject())

    assert caught.value.reset_at == datetime.fromtimestamp(reset, UTC)
    assert len(api.calls) == 1
    assert clock.sleeps == []


def test_429_retry_after_seconds_is_honoured(api, clock):
    api.post("https://api.fullcontact.com/v3/person.enrich", status=429, headers={"Retry-After": "3"})
    api.post("https://api.fullcontact.com/v3/person.enrich", json=FULLCONTACT_PERSON)

    make(FullContactAdapter, clock).fetch(Subject(email="bart@fullcontact.com"))

    assert clock.sleeps == [3.0]


def test_graph_throttling_code_is_rate_limited_not_bad_credentials(api, clock):
    usage = {"17841405309211844": [{"type": "instagram", "call_count": 100, "estimated_time_to_regain_access": 10}]}
    api.get(
        "https://graph.facebook.com/v19.0/business_account_id-1",
        status=403,
        json={
            "error": {
                "message": "(#4) Application request limit reached",
                "type": "OAuthException",
                "is_transient": True,
                "code": 4,
                "fbtrace_id": "AbCdEf123",
            }
        },
        headers={"X-Business-Use-Case-Usage": json.dumps(usage)},
    )
    with pytest.raises(RateLimited) as caught:
        make(InstagramAdapter, clock).fetch(Subject(handles={"instagram": "bluebottle"}))
    assert caught.value.reset_at == datetime.fromtimestamp(NOW + 600, UTC)  # 10 minutes


def test_rate_limit_spaces_calls_per_tenant(api, clock):
    api.get(X_USER_URL, json=X_USER)
    adapter = make(XAdapter, clock, rate_per_second=2.0, burst=1)

    for _ in range(3):
        adapter.fetch(x_subject(), tenant="t1")
    assert clock.sleeps == pytest.approx([0.5, 0.5])

    adapter.fetch(x_subject(), tenant="t2")  # another tenant's budget is its own
    assert clock.sleeps == pytest.approx([0.5, 0.5])
    assert len(api.calls) == 4


def test_rate_limit_refuses_rather_than_waiting_too_long(api, clock):
    api.get(X_USER_URL, json=X_USER)
    adapter = make(XAdapter, clock, rate_per_second=0.01, burst=1, max_wait=5.0)

    adapter.fetch(x_subject(), tenant="t1")
    with pytest.raises(RateLimited) as caught:
        adapter.fetch(x_subject(), tenant="t1")

    assert caught.value.reset_at == datetime.fromtimestamp(NOW + 100, UTC)
    assert len(api.calls) == 1


# ---------------------------------------------------------------------------------------------
# Failures: retries, breaker, credentials


def test_5xx_is_retried_with_backoff_then_succeeds(api, clock):
    api.get(X_USER_URL, status=503)
    api.get(X_USER_URL, status=502)
    api.get(X_USER_URL, json=X_USER)

    assert make(XAdapter, clock).fetch(x_subject()).followers == 513958
    assert len(api.calls) == 3
    assert len(clock.sleeps) == 2


def test_connection_errors_are_retried(api, clock):
    api.get(X_USER_URL, body=requests.ConnectionError("connection reset"))
    api.get(X_USER_URL, json=X_USER)

    assert make(XAdapter, clock).fetch(x_subject()).followers == 513958
    assert len(api.calls) == 2


def test_retries_exhausted_is_provider_unavailable(api, clock):
    api.get(X_USER_URL, status=500)

    with pytest.raises(ProviderUnavailable, match="HTTP 500"):
        make(XAdapter, clock, max_attempts=3).fetch(x_subject())
    assert len(api.calls) == 3


def test_breaker_opens_after_failures_and_rejects_without_calling(api, clock):
    api.get(X_USER_URL, status=503)
    adapter = make(XAdapter, clock, max_attempts=1, breaker_failures=3, breaker_cooldown=30.0)

    for _ in range(3):
        with pytest.raises(ProviderUnavailable):
            adapter.fetch(x_subject())
    assert len(api.calls) == 3
    assert adapter.http.breaker.state == CircuitBreaker.OPEN

    with pytest.raises(ProviderUnavailable, match="circuit open"):
        adapter.fetch(x_subject())
    assert len(api.calls) == 3  # refused without touching the provider


def test_breaker_half_opens_after_cooldown_and_a_good_trial_closes_it(api, clock):
    failing = api.get(X_USER_URL, status=503)
    adapter = make(XAdapter, clock, max_attempts=1, breaker_failures=2, breaker_cooldown=30.0)
    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            adapter.fetch(x_subject())

    clock.now += 30.0
    assert adapter.http.breaker.state == CircuitBreaker.HALF_OPEN

    # A failed trial opens it again at once, without waiting for the threshold.
    with pytest.raises(ProviderUnavailable):
        adapter.fetch(x_subject())
    assert adapter.http.breaker.state == CircuitBreaker.OPEN

    clock.now += 30.0
    api.remove(failing)
    api.get(X_USER_URL, json=X_USER)
    assert adapter.fetch(x_subject()).followers == 513958
    assert adapter.http.breaker.state == CircuitBreaker.CLOSED
    assert len(api.calls) == 4


def test_half_open_lets_one_trial_through_at_a_time(clock):
    breaker = CircuitBreaker(failures=1, cooldown=10.0, clock=clock)
    breaker.failure()
    assert not breaker.allow()
    clock.now += 10.0
    assert breaker.allow()
    assert not breaker.allow()  # the trial is still out


def test_a_trial_that_never_reports_back_is_given_up_after_another_cooldown(clock):
    breaker = CircuitBreaker(failures=1, cooldown=10.0, clock=clock)
    breaker.failure()
    clock.now += 10.0
    assert breaker.allow()  # the trial's caller dies without reporting
    clock.now += 10.0
    assert breaker.allow()


def test_a_success_answer_that_is_not_json_is_a_provider_error_not_a_crash(api, clock):
    api.get(X_USER_URL, body="<html>maintenance</html>", content_type="text/html")

    with pytest.raises(ProviderError, match="not JSON"):
        make(XAdapter, clock).fetch(x_subject())


def test_401_is_bad_credentials_without_retry(api, clock):
    api.get(X_USER_URL, status=401, json=X_UNAUTHORIZED)

    with pytest.raises(BadCredentials):
        make(XAdapter, clock).fetch(x_subject())
    assert len(api.calls) == 1


def test_graph_expired_token_is_bad_credentials(api, clock):
    api.get(
        "https://graph.facebook.com/v19.0/bluebottlecoffee",
        status=400,
        json={
            "error": {
                "message": "Error validating access token: Session has expired on Sunday, 23-Nov-25 07:00:00 PST.",
                "type": "OAuthException",
                "code": 190,
                "error_subcode": 463,
                "fbtrace_id": "AbCdEf123",
            }
        },
    )
    with pytest.raises(BadCredentials, match="Session has expired"):
        make(FacebookAdapter, clock).fetch(Subject(handles={"facebook": "bluebottlecoffee"}))
    assert len(api.calls) == 1


def test_missing_credentials_is_not_configured_and_calls_nothing(api, clock):
    adapter = XAdapter.from_env({}, clock=clock)

    with pytest.raises(NotConfigured, match="X_API_BEARER_TOKEN") as caught:
        adapter.fetch(x_subject())
    assert caught.value.code == "not_configured"
    assert len(api.calls) == 0

    instagram = InstagramAdapter.from_env({"INSTAGRAM_ACCESS_TOKEN": "t"}, clock=clock)
    with pytest.raises(NotConfigured, match="INSTAGRAM_BUSINESS_ACCOUNT_ID"):
        instagram.fetch(Subject(handles={"instagram": "bluebottle"}))


def test_a_tenant_may_bring_its_own_credentials(api, clock):
    api.get(X_USER_URL, json=X_USER, match=[matchers.header_matcher({"Authorization": "Bearer tenant-token"})])
    adapter = XAdapter.from_env({}, clock=clock)  # no platform token at all

    profile = adapter.fetch(x_subject(), tenant="t1", credentials={"bearer_token": "tenant-token"})

    assert profile.followers == 513958


def test_timeouts_from_settings_reach_requests(api, clock):
    api.get(X_USER_URL, json=X_USER)
    env = {"X_API_BEARER_TOKEN": "tok", "X_API_CONNECT_TIMEOUT": "2", "X_API_READ_TIMEOUT": "7.5"}

    XAdapter.from_env(env, clock=clock).fetch(x_subject())

    assert api.calls[0].request.req_kwargs["timeout"] == (2.0, 7.5)


# ---------------------------------------------------------------------------------------------
# Settings and the registry


def test_settings_name_the_bad_variable():
    with pytest.raises(SettingsError, match="X_API_READ_TIMEOUT"):
        XAdapter.from_env({"X_API_READ_TIMEOUT": "soon"})
    with pytest.raises(SettingsError, match="FULLCONTACT_BASE_URL"):
        FullContactAdapter.from_env({"FULLCONTACT_BASE_URL": "api.fullcontact.com"})
    with pytest.raises(SettingsError, match="INSTAGRAM_RATE_PER_SECOND"):
        InstagramAdapter.from_env({"INSTAGRAM_RATE_PER_SECOND": "0"})


def test_settings_read_base_urls_and_keep_credentials_out_of_repr():
    adapter = FacebookAdapter.from_env(
        {"FACEBOOK_GRAPH_BASE_URL": "http://127.0.0.1:9999/v19.0/", "FACEBOOK_ACCESS_TOKEN": "secret-token"}
    )
    assert adapter.config.base_url == "http://127.0.0.1:9999/v19.0"
    assert "secret-token" not in repr(adapter.config)


def test_registry_has_one_adapter_per_network_module():
    assert set(registry()) == {"x", "instagram", "facebook", "fullcontact"}
    built = adapters({})
    assert {name: type(adapter) for name, adapter in built.items()} == registry()
