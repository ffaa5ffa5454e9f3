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
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, parseaddr

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


def build_message(message: OutgoingMessage, sender: str) -> EmailMessage:
    """The MIME message for a rendered email delivery ({subject, text, html})."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.address
    mail["Subject"] = message.content.get("subject") or ""
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = message_id(message.delivery_id)
    if message.unsubscribe_url:
        mail["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail.set_content(message.content.get("text") or "")
    if message.content.get("html"):
        mail.add_alternative(message.content["html"], subtype="html")
    return mail


class EmailAdapter:
    channel = "email"

    def __init__(self, config: SmtpConfig | None = None):
        self.config = config or SmtpConfig.from_env()

    def send(self, message: OutgoingMessage) -> SendResult:
        cfg = self.config
        if not cfg.host:
            raise PermanentSendError(NOT_CONFIGURED, "SMTP_HOST is not set")
        addresses = getaddresses([message.address])
        if len(addresses) != 1 or "@" not in addresses[0][1]:
            raise PermanentSendError(INVALID_ADDRESS, f"{message.address!r} is not one email address")
        mail = build_message(message, cfg.sender)
        try:
            with self._connect() as smtp:
                if cfg.starttls and not cfg.implicit_tls:
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.username:
                    smtp.login(cfg.username, cfg.password)
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            raise _by_code(code, reply) from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentSendError(BAD_CREDENTIALS, _text(exc.smtp_code, exc.smtp_error)) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentSendError(NOT_CONFIGURED, f"the SMTP server refused: {exc}") from exc
        except smtplib.SMTPResponseException as exc:
            raise _by_code(exc.smtp_code, exc.smtp_error) from exc
        except (smtplib.SMTPException, OSError) as exc:
            # Dropped or refused connections, timeouts, TLS failures: the server may answer later.
            raise TransientSendError("unavailable", f"{type(exc).__name__}: {exc}") from exc
        return SendResult(message_id(message.delivery_id))

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
