"""campaigns: dynamic segments over an audience projection, cross-channel offers sent through the
bus by channel workers, event triggers, tracking, conversions and reports."""

SCHEMA = "campaigns"
SOURCE = "/liaison/campaigns"

PURPOSES = ("email_marketing", "sms_marketing", "social_dm_marketing", "profile_enrichment", "geolocation")
CHANNELS = ("email", "sms", "social_dm")
# The consent each channel needs (CONTRACT section 4: per-channel consent).
CHANNEL_PURPOSE = {"email": "email_marketing", "sms": "sms_marketing", "social_dm": "social_dm_marketing"}
