"""campaigns' HTTP layer: thin routes and their marshmallow schemas, one module per resource."""

from services.campaigns.api import contacts


def blueprints() -> list:
    return [contacts.blp]
