"""Email over SMTP.

Each message is MIME multipart/alternative (the text part, then the HTML part), with:
- `Message-ID: <delivery-id@liaison>`: deterministic, so a message sent again after a worker died
  is recognisably the same one (SMTP has no idempotency; receivers and the sandbox's sink drop a
  Message-ID they already have);
- `List-Unsubscribe: <https://.../t/u/token>` and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`
  (RFC 8058 one-click unsubscribe: mailbox providers show an unsubscribe button that POSTs to the URL).

Settings: SMTP_HOST (unset: the channel is not configured), SMTP_PORT (25), SMTP_STARTTLS (false),
SMTP_SSL (false: implicit TLS, port 465), SMTP_USERNAME / SMTP_PASSWORD (login when set),
SMTP_TIMEOUT (10 s), CAMPAIGNS_EMAIL_FROM (the From header and envelope sender).

Failures: a 5xx reply (refused recipient, sender or message) is permanent; a 4xx reply, a refused
or dropped connection and a timeout are transient.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import formataddr, formatdate, getaddresses, parseaddr
from functools import lru_cache
from typing import Any

from services.campaigns.channels.base import (
    BAD_CREDENTIALS,
    INVALID_ADDRESS,
    NOT_CONFIGURED,
    REJECTED,
    OutgoingMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
    env_flag,
    env_text,
    env_timeout,
    environment,
)
from shared.settings import SettingsError, env_number

MESSAGE_ID_DOMAIN = "liaison"
DEFAULT_FROM = "Liaison <no-reply@liaison.invalid>"


def message_id(delivery_id: str) -> str:
    return f"<{delivery_id}@{MESSAGE_ID_DOMAIN}>"


@dataclass(frozen=True)
class SmtpConfig:
    host: str = ""
    port: int = 25
    starttls: bool = False
    implicit_tls: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 10.0
    sender: str = DEFAULT_FROM

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SmtpConfig:
        env = environment(env)
        sender = env_text(env, "CAMPAIGNS_EMAIL_FROM", DEFAULT_FROM)
        if "@" not in parseaddr(sender)[1]:
            raise SettingsError(f"CAMPAIGNS_EMAIL_FROM={sender!r} is not an email address")
        return cls(
            host=env_text(env, "SMTP_HOST"),
            port=env_number(env, "SMTP_PORT", 25, 1, 65535),
            starttls=env_flag(env, "SMTP_STARTTLS"),
            implicit_tls=env_flag(env, "SMTP_SSL"),
            username=env_text(env, "SMTP_USERNAME"),
            password=env.get("SMTP_PASSWORD", ""),
            timeout=env_timeout(env, "SMTP_TIMEOUT", 10.0),
            sender=sender,
        )


class _WirePolicy(Compat32):
    """How the message goes on the wire: smtplib sends bytes as they are, and SMTP lines end in
    CRLF. Headers are not folded below RFC 5322's hard limit: a folded List-Unsubscribe would put
    its URL on a continuation line, which some receivers read with a leading space.

    A header that is one line of ASCII within that limit is written as it is: compat32 would run
    it through email.header.Header's folding to the same result, at some 30 us a header and 15
    headers a message, a quarter of a channel worker's CPU per email."""

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if (isinstance(value, str) and value.isascii() and "\r" not in value and "\n" not in value
                and len(name) + 2 + len(value) <= (self.max_line_length or 998)):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)


WIRE = _WirePolicy(linesep="\r\n", max_line_length=998)


def build_message(message: OutgoingMessage, sender: str) -> Message:
    """The MIME message for a rendered email delivery ({subject, text, html}).

    Built with the compat32 classes, headers encoded by hand (RFC 2047 where they are not
    ASCII): the `email` package's newer EmailMessage parses every header it is given and took
    two thirds of a channel worker's CPU per send."""
    text = MIMEText(message.content.get("text") or "", "plain", "utf-8")
    if message.content.get("html"):
        # The boundary is set here, not found by the generator, which compiles a new regular
        # expression for every message to check that its random one is absent from the parts: the
        # parts are base64, whose alphabet has no "_", so "=_" cannot occur in them.
        mail: Message = MIMEMultipart("alternative", boundary=f"=_liaison_{uuid.uuid4().hex}")
        mail.attach(text)
        mail.attach(MIMEText(message.content["html"], "html", "utf-8"))
    else:
        mail = text
    mail["From"] = _address(sender)
    mail["To"] = _address(message.address)
    mail["Subject"] = _header(message.content.get("subject") or "")
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = message_id(message.delivery_id)
    if message.unsubscribe_url:
        mail["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return mail


def _header(value: str) -> str | Header:
    # One line (a line break in a header would start another one), RFC 2047 when not ASCII.
    value = " ".join(value.split())
    return value if value.isascii() else Header(value, "utf-8")


@lru_cache(maxsize=1024)  # the sender's, mostly: the same on every email
def _address(value: str) -> str:
    name, address = parseaddr(value)
    if not name:
        return address or value
    return formataddr((name, address), charset="utf-8")


class EmailAdapter:
    """Sends over one SMTP connection per thread, kept open between messages: a connection's
    greeting, TLS handshake and login cost more than the message, and mail servers expect a
    sender to reuse its connections. One the server closed while idle is opened again."""

    channel = "email"
    idempotent = True

    def __init__(self, config: SmtpConfig | None = None):
        self.config = config or SmtpConfig.from_env()
        self._local = threading.local()

    def send(self, message: OutgoingMessage) -> SendResult:
        cfg = self.config
        if not cfg.host:
            raise PermanentSendError(NOT_CONFIGURED, "SMTP_HOST is not set")
        addresses = getaddresses([message.address])
        if len(addresses) != 1 or "@" not in addresses[0][1]:
            raise PermanentSendError(INVALID_ADDRESS, f"{message.address!r} is not one email address")
        mail = build_message(message, cfg.sender)
        try:
            reused = getattr(self._local, "smtp", None) is not None
            envelope = (parseaddr(cfg.sender)[1], [addresses[0][1]], mail.as_bytes(policy=WIRE))
            try:
                self._connection().sendmail(*envelope)
            except smtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                self.close()
                self._connection().sendmail(*envelope)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            raise _by_code(code, reply) from exc
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            raise PermanentSendError(BAD_CREDENTIALS, _text(exc.smtp_code, exc.smtp_error)) from exc
        except smtplib.SMTPNotSupportedError as exc:
            self.close()
            raise PermanentSendError(NOT_CONFIGURED, f"the SMTP server refused: {exc}") from exc
        except smtplib.SMTPResponseException as exc:
            # smtplib reset the transaction: the connection can take the next message.
            raise _by_code(exc.smtp_code, exc.smtp_error) from exc
        except (smtplib.SMTPException, OSError) as exc:
            # Dropped or refused connections, timeouts, TLS failures: the server may answer later.
            self.close()
            raise TransientSendError("unavailable", f"{type(exc).__name__}: {exc}") from exc
        return SendResult(message_id(message.delivery_id))

    def close(self) -> None:
        """Closes this thread's connection, if it has one (without waiting for a dead server)."""
        smtp = getattr(self._local, "smtp", None)
        self._local.smtp = None
        if smtp is not None:
            smtp.close()

    def _connection(self) -> smtplib.SMTP:
        smtp = getattr(self._local, "smtp", None)
        if smtp is None:
            cfg = self.config
            smtp = self._connect()
            try:
                if cfg.starttls and not cfg.implicit_tls:
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.username:
                    smtp.login(cfg.username, cfg.password)
            except BaseException:
                smtp.close()
                raise
            self._local.smtp = smtp
        return smtp

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        if cfg.implicit_tls:
            return smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=ssl.create_default_context())
        return smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)


def _text(code: int, reply: bytes | str) -> str:
    words = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {words}".strip()


def _by_code(code: int, reply: bytes | str) -> PermanentSendError | TransientSendError:
    if 500 <= code < 600:
        return PermanentSendError(REJECTED, _text(code, reply))
    return TransientSendError("unavailable", _text(code, reply))
