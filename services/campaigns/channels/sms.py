"""SMS over a Twilio-style REST API (https://www.twilio.com/docs/messaging/api/message-resource).

    POST {SMS_API_BASE_URL}/2010-04-01/Accounts/{SMS_ACCOUNT_SID}/Messages.json
    Authorization: Basic sid:token
    I-Twilio-Idempotency-Token: <delivery id>
    To=+E164&From=SMS_FROM&Body=...&StatusCallback=<campaigns' callback URL>

    201 {"sid": "SM...", "status": "queued", "price": null | "-0.00750", "price_unit": "USD", ...}
    4xx/5xx {"code": 21211, "message": "...", "more_info": "https://www.twilio.com/docs/errors/21211",
             "status": 400}

The idempotency token is the delivery id: a message sent again after a worker died is recognised
by the provider, which answers the first message instead of sending a second. The status
callback (services.campaigns.api.callbacks) later says whether it was delivered.

Settings: SMS_API_BASE_URL (https://api.twilio.com), SMS_ACCOUNT_SID, SMS_AUTH_TOKEN, SMS_FROM
(an E.164 number or a messaging service's sender; any unset: not configured), SMS_TIMEOUT (10 s).
`To` must be a valid E.164 number (checked with `phonenumbers` before any call).

Failures: 429 and 5xx are transient; 401/403 bad credentials; 400 with an invalid or unreachable
number (21211, 21614, 21612, 21408, 21610 unsubscribed) and any other 4xx are permanent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import phonenumbers
import requests

from services.campaigns.channels.base import (
    BAD_CREDENTIALS,
    INVALID_ADDRESS,
    NOT_CONFIGURED,
    REJECTED,
    OutgoingMessage,
    PermanentSendError,
    SandboxedProvider,
    SendResult,
    TransientSendError,
    env_base_url,
    env_text,
    env_timeout,
    environment,
    json_body,
    pooled_session,
    post,
)

DEFAULT_BASE_URL = "https://api.twilio.com"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
# Twilio's codes for a number that cannot receive this message: the address is at fault.
ADDRESS_ERRORS = frozenset({21211, 21214, 21408, 21610, 21612, 21614})
# Twilio's magic "From" that its test credentials accept; the sandbox takes it as the sender.
SANDBOX_FROM = "+15005550006"

SANDBOXED = SandboxedProvider(
    network="sms",
    base_url_env="SMS_API_BASE_URL",
    default_base_url=DEFAULT_BASE_URL,
    credential_env={"account_sid": "SMS_ACCOUNT_SID", "auth_token": "SMS_AUTH_TOKEN"},
    sandbox_values={"SMS_FROM": SANDBOX_FROM},
)


def e164(number: str) -> str | None:
    """The number in E.164 when it is a valid international number, else None."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True)
class SmsConfig:
    base_url: str = DEFAULT_BASE_URL
    account_sid: str = ""
    auth_token: str = field(default="", repr=False)
    sender: str = ""
    timeout: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SmsConfig:
        env = environment(env)
        return cls(
            base_url=env_base_url(env, "SMS_API_BASE_URL", DEFAULT_BASE_URL),
            account_sid=env_text(env, "SMS_ACCOUNT_SID"),
            auth_token=env.get("SMS_AUTH_TOKEN", "").strip(),
            sender=env_text(env, "SMS_FROM"),
            timeout=env_timeout(env, "SMS_TIMEOUT", 10.0),
        )

    @property
    def configured(self) -> bool:
        return bool(self.account_sid and self.auth_token and self.sender)


class SmsAdapter:
    channel = "sms"
    idempotent = True

    def __init__(self, config: SmsConfig | None = None, session: requests.Session | None = None):
        self.config = config or SmsConfig.from_env()
        self.session = session or pooled_session()

    def send(self, message: OutgoingMessage) -> SendResult:
        cfg = self.config
        if not cfg.configured:
            raise PermanentSendError(NOT_CONFIGURED, "SMS_ACCOUNT_SID, SMS_AUTH_TOKEN and SMS_FROM must be set")
        to = e164(message.address)
        if to is None:
            raise PermanentSendError(INVALID_ADDRESS, f"{message.address!r} is not a valid E.164 phone number")
        form = {"To": to, "From": cfg.sender, "Body": message.text}
        if message.status_callback:
            form["StatusCallback"] = message.status_callback
        response = post(
            self.session, f"{cfg.base_url}/2010-04-01/Accounts/{cfg.account_sid}/Messages.json",
            (min(cfg.timeout, 5.0), cfg.timeout), data=form, auth=(cfg.account_sid, cfg.auth_token),
            headers={IDEMPOTENCY_HEADER: message.idempotency_key, "Accept": "application/json"},
        )
        body = json_body(response)
        if response.status_code in (200, 201) and body.get("sid"):
            return SendResult(str(body["sid"]), _price(body.get("price")))
        detail = f"{body.get('code', response.status_code)} {body.get('message') or response.reason}".strip()
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientSendError("unavailable", detail)
        if response.status_code in (401, 403):
            raise PermanentSendError(BAD_CREDENTIALS, detail)
        if body.get("code") in ADDRESS_ERRORS:
            raise PermanentSendError(INVALID_ADDRESS, detail)
        if response.status_code in (200, 201):
            # A success without a sid: nothing to follow the message by; the provider misbehaves.
            raise TransientSendError("unavailable", "the provider answered without a message sid")
        raise PermanentSendError(REJECTED, detail)


def _price(raw: object) -> Decimal | None:
    """Twilio's price is a negative string (what the account was charged), null until known."""
    if raw in (None, ""):
        return None
    try:
        return abs(Decimal(str(raw)))
    except InvalidOperation:
        return None
