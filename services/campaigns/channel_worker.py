"""campaigns' channel workers: one consumer per channel (`campaigns-email`, `campaigns-sms`,
`campaigns-social_dm`), each bound to its channel's dispatch events and sending through its
adapter (services.campaigns.sending). Start as many of these processes as the volume needs: the
channel queues are shared by competing consumers, one batch at a time each (prefetch 1, so a
slow batch never holds others back in a busy process's buffer).

    python -m services.campaigns.channel_worker [--channels email,sms,social_dm]

The channel workers only consume: the delivery events they write to campaigns' outbox are relayed
by campaigns' main worker (services.campaigns.worker).

Links in messages: tracked clicks, the open pixel and the one-click unsubscribe URL come from
services.campaigns.tracking, signed with LIAISON_SECRET_KEY, on CAMPAIGNS_PUBLIC_URL (the address
people and providers reach campaigns at; CAMPAIGNS_URL by default). The SMS status callback is
CAMPAIGNS_PUBLIC_URL + /v1/campaigns/callbacks/sms.

CAMPAIGNS_SEND_CONCURRENCY (16): messages each channel consumer hands to its provider at once, on
threads of its own (each with its own SMTP connection or HTTP connection from the pool).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Any

from services.campaigns import CHANNELS, SCHEMA, tracking
from services.campaigns.channels import adapters as channel_adapters
from services.campaigns.channels.base import ChannelAdapter
from services.campaigns.dispatch import DISPATCH
from services.campaigns.sending import CONCURRENCY, Links, Render, TrackingLinks, dispatch_handler
from services.campaigns.templates import render_content
from services.campaigns.worker import MIGRATIONS
from shared import logging as json_logging
from shared.consumer import EventConsumer
from shared.db import Database
from shared.migrate import migrate
from shared.settings import Settings, env_number
from shared.worker import run_worker


def build(settings: Settings, db: Database, channels: Sequence[str], adapters: Mapping[str, ChannelAdapter],
          render: Render, links: Links, **options: Any) -> list[EventConsumer]:
    """One consumer per channel, named campaigns-<channel>, prefetching one batch at a time;
    `options` tune the sender's retries (services.campaigns.sending.Sender)."""
    handler = dispatch_handler(db, adapters, render, links, **options)
    return [EventConsumer.from_settings(f"campaigns-{channel}", db, SCHEMA, {DISPATCH[channel]: handler}, settings,
                                        prefetch=1)
            for channel in channels]


def tracking_links(settings: Settings) -> Links:
    return TrackingLinks(tracking.public_url(settings), settings.secret_key, tracking.click_url, tracking.open_url,
                         tracking.unsubscribe_url)


def parse_channels(raw: str) -> list[str]:
    channels = [c.strip() for c in raw.split(",") if c.strip()]
    unknown = sorted(set(channels) - set(CHANNELS))
    if unknown or not channels:
        raise SystemExit(f"--channels takes a comma-separated list of {', '.join(CHANNELS)}; not {raw!r}")
    return list(dict.fromkeys(channels))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="campaigns' channel workers")
    parser.add_argument("--channels", default=",".join(CHANNELS), help="comma-separated: email,sms,social_dm")
    channels = parse_channels(parser.parse_args(argv).channels)
    settings = Settings.from_env()
    json_logging.configure("campaigns-channels", settings.log_level)
    migrate(settings.database_url, SCHEMA, MIGRATIONS)
    # Per channel: the consumer's transaction and the sender's own short ones.
    db = Database(settings.database_url, min_size=1, max_size=2 * len(channels) + 1,
                  name="campaigns-channels").open()
    try:
        concurrency = env_number(os.environ, "CAMPAIGNS_SEND_CONCURRENCY", CONCURRENCY, 1, 64)
        consumers = build(settings, db, channels, channel_adapters(), render_content, tracking_links(settings),
                          concurrency=concurrency)
        # No relay here: the campaigns worker relays the outbox these consumers write to.
        run_worker("campaigns-channels", None, consumers, [])
    finally:
        db.close()


if __name__ == "__main__":
    main()
