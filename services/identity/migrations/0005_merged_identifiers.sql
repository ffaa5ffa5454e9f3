-- When a merge keeps the survivor's email or phone, the duplicate's own is dropped with the
-- duplicate. Its salted hash is kept here, under the survivor, so that erasing the survivor
-- later also suppresses a re-import of the address the duplicate had. Hashes only: no personal
-- data outlives the merge.
CREATE TABLE merged_identifiers (
    tenant_id       uuid NOT NULL,
    contact_id      uuid NOT NULL,  -- the survivor
    kind            text NOT NULL,  -- email or phone
    identifier_hash text NOT NULL,
    PRIMARY KEY (tenant_id, contact_id, kind, identifier_hash)
);
