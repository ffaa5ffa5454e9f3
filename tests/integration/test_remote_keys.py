"""The other services check keys by asking identity over HTTP (shared.auth.RemoteVerifier); a
revoked key must stop working there too within KEY_CACHE_SECONDS."""

import time

import pytest

from shared.auth import AdminAwareVerifier, CachedVerifier, RemoteVerifier


def test_another_service_learns_a_keys_tenant_and_scopes_from_identity(identity_url, tenant):
    remote = RemoteVerifier(identity_url)
    principal = remote.verify(tenant.keys["marketing"]["key"])
    assert principal is not None
    assert principal.tenant_id == tenant.id and principal.scopes == {"marketing"}
    assert remote.verify("lsn_unknown") is None


def test_a_revoked_key_stops_working_in_another_service_within_the_cache_time(identity_url, identity, admin,
                                                                               tenant, settings):
    verifier = AdminAwareVerifier(settings.admin_key,
                                  CachedVerifier(RemoteVerifier(identity_url), settings.key_cache_seconds))
    key = tenant.keys["crm"]
    assert verifier.verify(key["key"]) is not None
    assert identity.delete(f"/v1/api-keys/{key['id']}", headers=admin).status_code == 204
    deadline = time.monotonic() + 5
    while verifier.verify(key["key"]) is not None:
        assert time.monotonic() < deadline, "revoked key still accepted by the other service after 5 s"
        time.sleep(0.25)
    # The admin key is recognised locally, never sent to identity.
    assert verifier.verify(settings.admin_key).is_admin


def test_when_identity_is_down_a_call_is_a_503_problem_not_a_crash():
    from shared import errors

    with pytest.raises(errors.Unavailable):
        RemoteVerifier("http://127.0.0.1:1", timeout=0.5).verify("lsn_any")
