"""identity's HTTP layer: thin routes and their marshmallow schemas, one module per resource."""

from services.identity.api import audit, consents, contacts, erasures, identities, tenants


def blueprints() -> list:
    return [tenants.blp, contacts.blp, identities.blp, consents.blp, audit.blp, erasures.blp]
