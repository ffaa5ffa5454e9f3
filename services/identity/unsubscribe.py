"""One-click unsubscribes from campaigns' messages, recorded in the consent ledger.

campaigns withdraws the consent in its audience at once and publishes
`liaison.campaigns.unsubscribe.requested` {contact_id, purpose, channel, delivery_id,
campaign_id, trigger_id, at}; here it becomes a `withdrawn` record through the same use case as
the API (`consents.record_consent`), so `consent.recorded` is published and the audit trail
written, by actor `service:campaigns`. The consumer records the event id in the same
transaction: a redelivered event records nothing twice."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from services.identity import consents
from services.identity.repository import consents as consent_repo
from shared import errors
from shared.db import UnitOfWork

log = logging.getLogger(__name__)

UNSUBSCRIBE_REQUESTED = "liaison.campaigns.unsubscribe.requested"
ACTOR = "service:campaigns"


def withdrawal(data: dict[str, Any]) -> dict[str, Any]:
    """The ledger record of an unsubscribe: the message it came from is its proof."""
    purpose = data["purpose"]
    if purpose not in consents.PURPOSES:
        raise ValueError(f"unsubscribe.requested: unknown purpose {purpose!r}")
    return {
        "purpose": purpose,
        "status": "withdrawn",
        "legal_basis": "consent",
        "source": {"system": "liaison-campaigns", "form": "one-click-unsubscribe"},
        "notice_version": "unsubscribe",
        "captured_at": datetime.fromisoformat(data["at"]),
        "proof": {key: data.get(key) for key in ("channel", "delivery_id", "campaign_id", "trigger_id")
                  if data.get(key) is not None},
    }


def on_unsubscribe_requested(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """Records the withdrawal for the contact, or for the contact it was merged into meanwhile.
    A contact erased meanwhile has nothing left to withdraw: the event is done. A malformed event
    raises, so that it ends among the dead letters."""
    tenant_id, data = envelope["tenantid"], envelope["data"]
    record = withdrawal(data)
    contact_id = str(data["contact_id"])
    contact_id = consent_repo.survivor_of(uow, tenant_id, contact_id) or contact_id
    try:
        consents.record_consent(uow, tenant_id, ACTOR, contact_id, record)
    except errors.NotFound:
        log.info("unsubscribe of a contact that no longer exists", extra={"contact_id": contact_id})
