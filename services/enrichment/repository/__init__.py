"""enrichment's SQL, one module per aggregate. Every query is scoped by tenant_id and binds its
parameters; nothing here decides business rules."""
