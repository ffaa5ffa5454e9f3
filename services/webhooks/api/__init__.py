"""webhooks' HTTP layer: thin routes and their marshmallow schemas."""

from services.webhooks.api import webhooks


def blueprints() -> list:
    return [webhooks.blp, webhooks.contacts_blp]
