-- Contacts this service has erased. An event about one of them may still be in flight when the
-- erasure is handled (each service's relay publishes on its own), and must not file their data
-- again. Only the contact's id is kept: a random id that nothing links to a person any more.
CREATE TABLE erased_contacts (
    tenant_id  uuid NOT NULL,
    contact_id uuid NOT NULL,
    erased_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, contact_id)
);
