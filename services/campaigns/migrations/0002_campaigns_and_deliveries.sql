-- Campaigns, and one delivery per recipient and channel: the unit every later step (dispatch,
-- send, tracking, attribution, reports) works on. A delivery carries its own state, so a
-- redelivered dispatch batch finds what was already sent and never sends it twice.
CREATE TABLE campaigns (
    tenant_id        uuid NOT NULL,
    id               uuid NOT NULL,
    name             text NOT NULL,
    segment_id       uuid NOT NULL,
    channels         text[] NOT NULL,          -- order = preference
    strategy         text NOT NULL CHECK (strategy IN ('first_eligible', 'all_eligible')),
    content          jsonb NOT NULL,           -- per channel, and `web` for inbound offers
    schedule_at      timestamptz,
    frequency_cap    jsonb,                    -- {"max", "per_hours"}
    quiet_hours      jsonb,                    -- {"start": "21:00", "end": "08:00"}
    cost_per_message jsonb NOT NULL DEFAULT '{}',
    offer_ends_at    timestamptz,
    status           text NOT NULL CHECK (status IN ('draft', 'scheduled', 'launching', 'running', 'completed',
                                                     'cancelled')),
    audience         integer,                  -- contacts the segment held at launch
    created_at       timestamptz NOT NULL DEFAULT now(),
    launched_at      timestamptz,
    finished_at      timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX campaigns_scheduled ON campaigns (schedule_at) WHERE status = 'scheduled';

-- status: queued (to send), sending (handed to the provider: a redelivered batch sends it again
-- with the same idempotency key, which the provider recognises), sent, delivered (the provider
-- confirmed), failed (reason), suppressed (never to send: reason no_consent, no_address,
-- frequency_cap, suppression_list, withdrawn), deferred (quiet hours: sent at send_after).
CREATE TABLE deliveries (
    tenant_id           uuid NOT NULL,
    id                  uuid NOT NULL,
    campaign_id         uuid,                 -- one of campaign_id / trigger_id
    trigger_id          uuid,
    contact_id          uuid NOT NULL,
    channel             text NOT NULL CHECK (channel IN ('email', 'sms', 'social_dm')),
    status              text NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'failed',
                                                        'suppressed', 'deferred')),
    reason              text,
    address             text,                 -- email, E.164 phone, or network:handle, at launch
    send_after          timestamptz,          -- deferred by quiet hours until then
    attempts            integer NOT NULL DEFAULT 0,
    provider_message_id text,
    content             jsonb,                -- exactly what was sent, rendered, tracked links included
    cost                numeric,
    created_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    delivered_at        timestamptz,
    opened_at           timestamptz,
    clicked_at          timestamptz,
    opens               integer NOT NULL DEFAULT 0,
    clicks              integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX deliveries_campaign ON deliveries (tenant_id, campaign_id, status) WHERE campaign_id IS NOT NULL;
CREATE INDEX deliveries_trigger ON deliveries (tenant_id, trigger_id, created_at) WHERE trigger_id IS NOT NULL;
-- frequency caps (a contact's messages across campaigns and triggers) and last-touch attribution
CREATE INDEX deliveries_contact ON deliveries (tenant_id, contact_id, sent_at);
CREATE INDEX deliveries_deferred ON deliveries (send_after) WHERE status = 'deferred';
CREATE INDEX deliveries_provider_message ON deliveries (provider_message_id) WHERE provider_message_id IS NOT NULL;

-- Conversions, attributed to a delivery (last touch within 7 days) when one qualifies.
CREATE TABLE conversions (
    tenant_id   uuid NOT NULL,
    id          uuid NOT NULL,
    contact_id  uuid NOT NULL,
    campaign_id uuid,
    delivery_id uuid,
    channel     text,
    value       numeric NOT NULL,
    currency    text NOT NULL,
    occurred_at timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX conversions_campaign ON conversions (tenant_id, campaign_id);
CREATE INDEX conversions_contact ON conversions (tenant_id, contact_id, occurred_at);
