"""enrichment: profiles gathered from social networks and a person-enrichment vendor, the social
listening feed (mentions, check-ins, follows) and the prospects it turns up."""

SCHEMA = "enrichment"
SOURCE = "/liaison/enrichment"

# The consent purposes enrichment's data is gathered under (identity's ledger decides them).
PROFILE_ENRICHMENT = "profile_enrichment"
GEOLOCATION = "geolocation"
