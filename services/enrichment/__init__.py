"""enrichment: profiles gathered from social networks and a person-enrichment vendor, the social
listening feed (mentions, check-ins, follows) and the prospects it turns up."""

SCHEMA = "enrichment"
SOURCE = "/liaison/enrichment"
