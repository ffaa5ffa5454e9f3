-- Event-triggered sends: an SMS offer when a contact checks in near a shop, a welcome DM to a new
-- follower. `content` is the one channel's content, in the shape of a campaign's for it.
CREATE TABLE triggers (
    tenant_id      uuid NOT NULL,
    id             uuid NOT NULL,
    name           text NOT NULL,
    event          text NOT NULL CHECK (event IN ('social.checkin', 'social.follow', 'contact.created')),
    conditions     jsonb NOT NULL DEFAULT '{}',   -- {"network"?, "geofence"?: {"lat", "lon", "radius_m"}}
    channel        text NOT NULL CHECK (channel IN ('email', 'sms', 'social_dm')),
    content        jsonb NOT NULL,
    cooldown_hours integer NOT NULL DEFAULT 24,
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
-- Each event looks up its tenant's active triggers of its kind.
CREATE INDEX triggers_by_event ON triggers (tenant_id, event) WHERE active;
-- The cooldown: a trigger's last delivery to a contact.
CREATE INDEX deliveries_trigger_contact ON deliveries (tenant_id, trigger_id, contact_id, created_at)
    WHERE trigger_id IS NOT NULL;
