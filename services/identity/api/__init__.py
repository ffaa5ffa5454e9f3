"""identity's HTTP layer: thin routes and their marshmallow schemas, one module per resource."""

from services.identity.api import contacts, identities, tenants


def blueprints() -> list:
    return [tenants.blp, contacts.blp, identities.blp]
