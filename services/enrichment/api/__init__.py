"""enrichment's HTTP layer: thin routes and their marshmallow schemas, one module per resource."""

from services.enrichment.api import enrichments, profiles, providers, social


def blueprints() -> list:
    return [enrichments.blp, profiles.blp, providers.blp, social.blp]
