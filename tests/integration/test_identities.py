"""Linking social handles to contacts and resolving them back."""

import uuid

from tests.integration.test_http_platform import assert_problem, contact_body


def new_contact(identity, tenant, ref):
    return identity.post("/v1/contacts", json=contact_body(ref), headers=tenant.crm).json["id"]


def test_a_profile_url_links_as_its_handle_and_resolves_however_written(identity, tenant):
    contact_id = new_contact(identity, tenant, "h1")
    linked = identity.post(f"/v1/contacts/{contact_id}/identities",
                           json={"network": "x", "handle": "https://twitter.com/JaneDoe", "verified": True,
                                 "source": "crm-form"}, headers=tenant.crm)
    assert linked.status_code == 201
    assert linked.json["handle"] == "janedoe" and linked.json["verified"] is True
    for spelling in ("@JaneDoe", "janedoe", "https://x.com/janedoe", " @JANEDOE "):
        resolved = identity.get("/v1/identities/resolve", query_string={"network": "x", "handle": spelling},
                                headers=tenant.marketing)
        assert resolved.status_code == 200, spelling
        assert resolved.json == {"contact_id": contact_id, "identity_id": linked.json["id"]}


def test_the_same_handle_on_another_contact_is_a_conflict_naming_it(identity, tenant):
    owner = new_contact(identity, tenant, "h2")
    other = new_contact(identity, tenant, "h3")
    identity.post(f"/v1/contacts/{owner}/identities", json={"network": "instagram", "handle": "shop.paris"},
                  headers=tenant.crm)
    clash = assert_problem(identity.post(f"/v1/contacts/{other}/identities",
                                         json={"network": "instagram",
                                               "handle": "https://www.instagram.com/Shop.Paris/"},
                                         headers=tenant.crm), 409)
    assert clash["contact_id"] == owner and owner in clash["detail"]
    again = identity.post(f"/v1/contacts/{owner}/identities", json={"network": "instagram", "handle": "@shop.paris"},
                          headers=tenant.crm)
    assert again.status_code == 200  # linking what is already linked is harmless
    listed = identity.get(f"/v1/contacts/{owner}/identities", headers=tenant.crm).json["items"]
    assert [(i["network"], i["handle"]) for i in listed] == [("instagram", "shop.paris")]


def test_the_same_handle_in_another_tenant_is_independent(identity, tenant, other_tenant):
    mine = new_contact(identity, tenant, "h4")
    theirs = new_contact(identity, other_tenant, "h4")
    for t, c in ((tenant, mine), (other_tenant, theirs)):
        assert identity.post(f"/v1/contacts/{c}/identities", json={"network": "tiktok", "handle": "@dance"},
                             headers=t.crm).status_code == 201
    resolved = identity.get("/v1/identities/resolve?network=tiktok&handle=dance", headers=other_tenant.crm)
    assert resolved.json["contact_id"] == theirs
    assert_problem(identity.post(f"/v1/contacts/{mine}/identities", json={"network": "x", "handle": "a"},
                                 headers=other_tenant.crm), 404)


def test_unlink_frees_the_handle(identity, tenant):
    contact_id = new_contact(identity, tenant, "h5")
    link = identity.post(f"/v1/contacts/{contact_id}/identities", json={"network": "linkedin",
                                                                       "handle": "linkedin.com/in/ada-l"},
                         headers=tenant.crm).json
    assert identity.delete(f"/v1/contacts/{contact_id}/identities/{link['id']}", headers=tenant.crm).status_code == 204
    assert_problem(identity.get("/v1/identities/resolve?network=linkedin&handle=ada-l", headers=tenant.crm), 404)
    assert_problem(identity.delete(f"/v1/contacts/{contact_id}/identities/{link['id']}", headers=tenant.crm), 404)


def test_bad_handles_and_networks_are_422(identity, tenant):
    contact_id = new_contact(identity, tenant, "h6")
    bad = assert_problem(identity.post(f"/v1/contacts/{contact_id}/identities",
                                       json={"network": "myspace", "handle": "tom"}, headers=tenant.crm), 422)
    assert "network" in bad["errors"]
    bad = assert_problem(identity.post(f"/v1/contacts/{contact_id}/identities",
                                       json={"network": "x", "handle": "two words"}, headers=tenant.crm), 422)
    assert "handle" in bad["errors"]
    assert_problem(identity.post(f"/v1/contacts/{uuid.uuid4()}/identities",
                                 json={"network": "x", "handle": "ok"}, headers=tenant.crm), 404)
    assert_problem(identity.get("/v1/identities/resolve?network=x", headers=tenant.crm), 422)


def test_batch_resolve_answers_in_the_order_asked(identity, tenant):
    a = new_contact(identity, tenant, "r1")
    b = new_contact(identity, tenant, "r2")
    identity.post(f"/v1/contacts/{a}/identities", json={"network": "x", "handle": "alpha"}, headers=tenant.crm)
    identity.post(f"/v1/contacts/{b}/identities", json={"network": "facebook", "handle": "beta.b"},
                  headers=tenant.crm)
    items = [{"network": "facebook", "handle": "https://facebook.com/Beta.B"},
             {"network": "x", "handle": "nobody"},
             {"network": "x", "handle": "@Alpha"},
             {"network": "x", "handle": "not valid!"}]
    answer = identity.post("/v1/identities/resolve", json={"items": items}, headers=tenant.crm)
    assert answer.status_code == 200
    got = answer.json["items"]
    assert [i["contact_id"] for i in got] == [b, None, a, None]
    assert [i["handle"] for i in got[:3]] == ["beta.b", "nobody", "alpha"]
    assert "error" in got[3]
    too_many = [{"network": "x", "handle": f"h{i}"} for i in range(1001)]
    assert_problem(identity.post("/v1/identities/resolve", json={"items": too_many}, headers=tenant.crm), 422)
