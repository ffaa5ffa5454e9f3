-- Prospects: one row per handle seen in the feed that no contact has, with its running counts,
-- kept by the feed's ingestion so the list is an index scan, not an aggregate over every event.
-- A link of the handle deletes the row (its events become the contact's).
CREATE TABLE prospects (
    tenant_id     uuid NOT NULL,
    network       text NOT NULL,
    handle        text NOT NULL,
    mentions      integer NOT NULL DEFAULT 0,
    positive      integer NOT NULL DEFAULT 0,
    neutral       integer NOT NULL DEFAULT 0,
    negative      integer NOT NULL DEFAULT 0,
    sentiment_sum numeric NOT NULL DEFAULT 0,  -- over the mentions; unscored ones count as 0
    follows       integer NOT NULL DEFAULT 0,
    followers     bigint,                       -- the author's audience, as the feed last reported it
    followers_at  timestamptz,
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, network, handle)
);
CREATE INDEX prospects_by_engagement ON prospects (tenant_id, mentions DESC, last_seen DESC, network DESC, handle DESC);

INSERT INTO prospects (tenant_id, network, handle, mentions, positive, neutral, negative, sentiment_sum,
                       follows, first_seen, last_seen)
SELECT tenant_id, network, handle,
       count(*) FILTER (WHERE type = 'mention'),
       count(*) FILTER (WHERE type = 'mention' AND label = 'positive'),
       count(*) FILTER (WHERE type = 'mention' AND label IS DISTINCT FROM 'positive'
                        AND label IS DISTINCT FROM 'negative'),
       count(*) FILTER (WHERE type = 'mention' AND label = 'negative'),
       coalesce(sum(sentiment) FILTER (WHERE type = 'mention'), 0),
       count(*) FILTER (WHERE type = 'follow'),
       min(occurred_at), max(occurred_at)
FROM social_events WHERE contact_id IS NULL
GROUP BY tenant_id, network, handle;

-- The consent expiry sweep: grants that ran out with no event to say so.
CREATE INDEX contact_consents_expiring ON contact_consents (expires_at)
    WHERE status = 'granted' AND expires_at IS NOT NULL;

-- The freshness scheduler: profiles enriched longest ago first.
CREATE INDEX profiles_enriched ON profiles (enriched_at) WHERE enriched_at IS NOT NULL;

-- Who asked for a job: the API (a CRM) or the freshness scheduler.
ALTER TABLE enrichment_jobs ADD COLUMN requested_by text NOT NULL DEFAULT 'api'
    CHECK (requested_by IN ('api', 'freshness'));
