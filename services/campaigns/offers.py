"""Inbound offers: the same personalized offer a contact received by email or SMS, for a customer
portal or a social-network page app to show (`GET /v1/offers?contact_id=`).

A campaign's offer is the contact's when the campaign was launched (running or completed, not
cancelled) with `web` content, is still open (`offer_ends_at`, by default 30 days after the
launch), and the contact was in its audience at launch, whatever channel reached them or not:
someone who refused marketing messages may still see the offer where they came looking for it.
Not a contact on the suppression list (an erased person re-imported). Its links are tracked
against the contact's delivery of that campaign, so clicks count in the campaign's report.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from services.campaigns import templates
from services.campaigns.repository import audience as audience_repo
from services.campaigns.repository import offers as repo
from shared.db import UnitOfWork
from shared.events import rfc3339, utcnow

DEFAULT_OFFER_DAYS = timedelta(days=30)
Render = Callable[..., dict[str, Any]]


def offers_for(uow: UnitOfWork, tenant_id: str, contact_id: str, render: Render,
               click_url: Callable[[str, str], str]) -> list[dict[str, Any]]:
    """The contact's open offers, newest campaign first, rendered. `click_url(delivery_id,
    target)` makes a tracked link."""
    row = audience_repo.contact(uow, tenant_id, contact_id)
    if row is None or row["suppressed"]:
        return []
    contact, profile = templates.contact_of(row), templates.profile_of(row)
    offers = []
    for offer in repo.open_offers(uow, tenant_id, contact_id, utcnow(), DEFAULT_OFFER_DAYS):
        delivery_id = str(offer["delivery_id"])
        rendered = render("web", offer["content"], contact, profile,
                          lambda target, d=delivery_id: click_url(d, target))
        offers.append({"campaign_id": str(offer["campaign_id"]), "title": rendered["title"],
                       "body": rendered["body"], "ends_at": rfc3339(offer["ends_at"])})
    return offers
