"""console: the web console for campaign managers and compliance officers (`:8005`).

A backend-for-frontend: it has no database and no worker of its own, and talks only to the
identity, enrichment and campaigns REST APIs with the signed-in person's API key."""

SCHEMA = None  # no schema, no migrations: everything it shows comes from the three services' APIs
