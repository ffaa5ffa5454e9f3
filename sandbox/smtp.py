"""The sandbox's SMTP sink: accepts every email the campaigns' email channel sends and keeps it
in the sandbox outbox (sandbox/channels.py, GET /sandbox/outbox?channel=email), once per
Message-ID: a message sent again after a worker died is recognised, as the deterministic
Message-ID (<delivery-id@liaison>) intends.

A recipient whose local part starts with `unknown` is refused with 550 (a permanent failure, to
see one in a demo); everything else is accepted with 250 and delivered nowhere.

    python -m sandbox.smtp     (`make run` starts it; SANDBOX_SMTP_PORT, 8025 by default, on 127.0.0.1)
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import uuid

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from sandbox.channels import RAW, Outbox, store_path
from shared.settings import env_number

log = logging.getLogger(__name__)

DEFAULT_PORT = 8025
# A header line: its name, then its value with any folded continuation lines.
_HEADER = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.MULTILINE)


def message_id(raw: bytes) -> str | None:
    """The Message-ID header's value, unfolded, read from the header section alone (the email
    package's parser cost the sink more than its SMTP dialogue)."""
    end = raw.find(b"\r\n\r\n")
    head = raw if end == -1 else raw[:end]
    for header in _HEADER.finditer(head):
        if header.group(1).lower() == b"message-id":
            return " ".join(header.group(2).decode("latin-1").split()) or None
    return None


class SinkHandler:
    """aiosmtpd handler: refuses `unknown*` recipients, keeps each message once by Message-ID."""

    def __init__(self, outbox: Outbox):
        self.outbox = outbox

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address.split("@", 1)[0].lower().startswith("unknown"):
            return "550 5.1.1 The email account that you tried to reach does not exist"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        # Only the headers are parsed here, the message is kept as it came: parsing MIME cost more
        # than everything else the sink does, and the outbox parses it when someone reads it.
        key = message_id(raw) or f"<{uuid.uuid4()}@sandbox>"
        self.outbox.record("email", key, {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                                          RAW: raw.decode("latin-1")})
        return "250 Message accepted for delivery"


def sink(outbox: Outbox, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> Controller:
    """The SMTP sink, not yet started (tests start it on a free port)."""
    return Controller(SinkHandler(outbox), hostname=host, port=port)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sandbox-smtp %(levelname)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command at INFO
    port = env_number(os.environ, "SANDBOX_SMTP_PORT", DEFAULT_PORT, 1, 65535)
    controller = sink(Outbox(store_path()), "127.0.0.1", port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    controller.start()
    log.info("SMTP sink listening on 127.0.0.1:%s, keeping mail in %s", port, store_path())
    try:
        stop.wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
