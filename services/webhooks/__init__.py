"""webhooks: tenants register HTTPS endpoints of their CRM and the event types they want; every
matching event on the bus becomes a signed delivery, retried with backoff for a day, listed and
replayable (docs/webhooks.md)."""

SCHEMA = "webhooks"
SOURCE = "/liaison/webhooks"

# The contract's event types (CONTRACT.md section 5) an endpoint may subscribe to, by name or by a
# pattern over them. The worker's consumer is bound to exactly these: internal events (launch
# requests, jobs, audit entries) never leave Liaison.
SERVICES = ("identity", "enrichment", "campaigns", "webhooks")
EVENT_TYPES = (
    "liaison.identity.contact.upserted",
    "liaison.identity.contact.merged",
    "liaison.identity.contact.erasure_requested",
    "liaison.identity.handle.linked",
    "liaison.identity.handle.unlinked",
    "liaison.identity.consent.recorded",
    "liaison.enrichment.profile.updated",
    "liaison.enrichment.social.mention",
    "liaison.enrichment.social.mention.negative",
    "liaison.enrichment.social.checkin",
    "liaison.enrichment.social.follow",
    "liaison.campaigns.delivery.updated",
    *(f"liaison.{service}.erasure.completed" for service in SERVICES),
)
ERASURE_REQUESTED = "liaison.identity.contact.erasure_requested"
# Sent by POST /v1/webhooks/{id}/ping to that endpoint only, whatever it subscribed to.
PING = "liaison.webhooks.ping"
