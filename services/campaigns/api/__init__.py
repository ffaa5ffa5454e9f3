"""campaigns' HTTP layer: thin routes and their marshmallow schemas, one module per resource."""

from services.campaigns.api import callbacks, contacts, conversions, offers, triggers
from services.campaigns.api import campaigns as campaigns_api
from services.campaigns.api import segments as segments_api
from services.campaigns.api import tracking as tracking_api


def blueprints() -> list:
    return [tracking_api.blp, callbacks.blp, contacts.blp, segments_api.blp, campaigns_api.blp, conversions.blp,
            offers.blp, triggers.blp]
