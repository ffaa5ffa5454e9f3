"""identity: contacts, social handles, the consent ledger, the audit trail, erasure and access."""

SCHEMA = "identity"
SOURCE = "/liaison/identity"
