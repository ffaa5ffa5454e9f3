"""Erasure confirmations that can never be applied are refused before touching the database
(the consumer retries, then dead-letters them for an operator)."""

import pytest

from services.identity.erasure import PARTICIPANTS, on_erasure_completed


def envelope(data):
    return {"specversion": "1.0", "id": "1", "source": "/liaison/campaigns",
            "type": "liaison.campaigns.erasure.completed",
            "tenantid": "0190a3b4-0000-7000-8000-000000000000", "data": data}


@pytest.mark.parametrize("data", [None, [], {}, {"service": "campaigns"}, {"erasure_id": "nope"}])
def test_a_malformed_confirmation_is_refused(data):
    with pytest.raises(ValueError):
        on_erasure_completed(None, envelope(data))


def test_the_services_holding_personal_data_take_part():
    assert PARTICIPANTS == ("identity", "enrichment", "campaigns", "webhooks")
