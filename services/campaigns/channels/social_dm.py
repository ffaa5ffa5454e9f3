"""Social direct messages: X API v2 and the Messenger Send API (Facebook, and Instagram accounts
linked to a Page, which the same API serves).

X (https://docs.x.com/x-api/direct-messages/create-dm-message-by-participant-id):

    POST {X_DM_BASE_URL}/2/dm_conversations/with/{participant_id}/messages   {"text": "..."}
    Authorization: Bearer <user-context token of the sending account>
    201 {"data": {"dm_conversation_id": "...", "dm_event_id": "..."}}

Messenger (https://developers.facebook.com/docs/messenger-platform/send-messages):

    POST {MESSENGER_BASE_URL}/me/messages?access_token=<page token>
    {"recipient": {"id": "<PSID>"}, "messaging_type": "UPDATE", "message": {"text": "..."}}
    200 {"recipient_id": "...", "message_id": "m_..."}

`messaging_type` is UPDATE, not a MESSAGE_TAG: Meta's policy allows promotional content only in
standard messaging (within the window the person opened by writing to the Page, 24 hours for most
actions), and forbids it in tagged messages (ACCOUNT_UPDATE and the others are for non-promotional
updates). Outside the window Meta refuses the message (error 10, subcode 2018278): the delivery
fails with `outside_messaging_window` rather than breaking the policy.

Neither API has an idempotency key. Every request carries the delivery id in X-Liaison-Delivery-Id,
which the sandbox dedupes on; against the real APIs a worker killed between the provider's answer
and recording it may send that one DM again.

Settings: X_DM_BASE_URL (https://api.x.com), X_DM_ACCESS_TOKEN; MESSENGER_BASE_URL
(https://graph.facebook.com/v19.0), MESSENGER_ACCESS_TOKEN; SOCIAL_DM_TIMEOUT (10 s). A network
whose token is unset is not configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import requests

from services.campaigns.channels.base import (
    BAD_CREDENTIALS,
    DELIVERY_HEADER,
    INVALID_ADDRESS,
    NO_ADDRESS,
    NOT_CONFIGURED,
    REJECTED,
    OutgoingMessage,
    PermanentSendError,
    SandboxedProvider,
    SendResult,
    TransientSendError,
    env_base_url,
    env_timeout,
    environment,
    json_body,
    pooled_session,
    post,
)

X_BASE_URL = "https://api.x.com"
MESSENGER_BASE_URL = "https://graph.facebook.com/v19.0"
# The networks a DM goes out on, in order of preference when a contact has several.
NETWORKS = ("x", "facebook", "instagram")
MESSENGER_NETWORKS = frozenset({"facebook", "instagram"})
OUTSIDE_WINDOW = "outside_messaging_window"
# Graph API codes worth trying again: rate limits (4, 17, 32, 613), temporary failures (1, 2, 1200).
MESSENGER_TRANSIENT = frozenset({1, 2, 4, 17, 32, 613, 1200})
MESSENGER_TOKEN_ERRORS = frozenset({102, 190})

SANDBOXED = (
    SandboxedProvider(network="x_dm", base_url_env="X_DM_BASE_URL", default_base_url=X_BASE_URL,
                      credential_env={"access_token": "X_DM_ACCESS_TOKEN"}),
    SandboxedProvider(network="messenger", base_url_env="MESSENGER_BASE_URL", default_base_url=MESSENGER_BASE_URL,
                      credential_env={"access_token": "MESSENGER_ACCESS_TOKEN"}),
)


@dataclass(frozen=True)
class SocialDmConfig:
    x_base_url: str = X_BASE_URL
    x_token: str = field(default="", repr=False)
    messenger_base_url: str = MESSENGER_BASE_URL
    messenger_token: str = field(default="", repr=False)
    timeout: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SocialDmConfig:
        env = environment(env)
        return cls(
            x_base_url=env_base_url(env, "X_DM_BASE_URL", X_BASE_URL),
            x_token=env.get("X_DM_ACCESS_TOKEN", "").strip(),
            messenger_base_url=env_base_url(env, "MESSENGER_BASE_URL", MESSENGER_BASE_URL),
            messenger_token=env.get("MESSENGER_ACCESS_TOKEN", "").strip(),
            timeout=env_timeout(env, "SOCIAL_DM_TIMEOUT", 10.0),
        )


def choose_handle(handles: list[Mapping[str, object]], preferred: str | None = None) -> Mapping[str, object] | None:
    """The handle to DM: the one chosen at launch (`network:handle`) while it is still linked,
    else the first network of NETWORKS the contact has a handle on."""
    usable = [h for h in handles if h["network"] in NETWORKS]
    if preferred:
        network, _, handle = preferred.partition(":")
        for h in usable:
            if h["network"] == network and str(h["handle"]).lower() == handle.lower():
                return h
    for network in NETWORKS:
        for h in usable:
            if h["network"] == network:
                return h
    return None


class SocialDmAdapter:
    channel = "social_dm"
    idempotent = False

    def __init__(self, config: SocialDmConfig | None = None, session: requests.Session | None = None):
        self.config = config or SocialDmConfig.from_env()
        self.session = session or pooled_session()

    def send(self, message: OutgoingMessage) -> SendResult:
        if not message.address:
            raise PermanentSendError(NO_ADDRESS, f"no {message.network} user id for this handle")
        if message.network == "x":
            return self._send_x(message)
        if message.network in MESSENGER_NETWORKS:
            return self._send_messenger(message)
        raise PermanentSendError(NO_ADDRESS, f"no DM on network {message.network!r}")

    def _timeout(self) -> tuple[float, float]:
        return (min(self.config.timeout, 5.0), self.config.timeout)

    def _send_x(self, message: OutgoingMessage) -> SendResult:
        cfg = self.config
        if not cfg.x_token:
            raise PermanentSendError(NOT_CONFIGURED, "X_DM_ACCESS_TOKEN is not set")
        if not message.address.isdigit():
            raise PermanentSendError(INVALID_ADDRESS, f"{message.address!r} is not an X user id")
        response = post(
            self.session, f"{cfg.x_base_url}/2/dm_conversations/with/{message.address}/messages", self._timeout(),
            json={"text": message.text},
            headers={"Authorization": f"Bearer {cfg.x_token}", DELIVERY_HEADER: message.idempotency_key},
        )
        body = json_body(response)
        event_id = (body.get("data") or {}).get("dm_event_id") if isinstance(body.get("data"), dict) else None
        if response.status_code in (200, 201) and event_id:
            return SendResult(str(event_id))
        detail = f"{response.status_code} {body.get('detail') or body.get('title') or response.reason}"
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientSendError("unavailable", detail)
        if response.status_code == 401:
            raise PermanentSendError(BAD_CREDENTIALS, detail)
        if response.status_code in (200, 201):
            raise TransientSendError("unavailable", "X answered without a dm_event_id")
        # 403: the person does not accept DMs from this account; 400: no such participant.
        raise PermanentSendError(INVALID_ADDRESS if response.status_code == 400 else REJECTED, detail)

    def _send_messenger(self, message: OutgoingMessage) -> SendResult:
        cfg = self.config
        if not cfg.messenger_token:
            raise PermanentSendError(NOT_CONFIGURED, "MESSENGER_ACCESS_TOKEN is not set")
        response = post(
            self.session, f"{cfg.messenger_base_url}/me/messages", self._timeout(),
            params={"access_token": cfg.messenger_token},
            json={"recipient": {"id": message.address}, "messaging_type": "UPDATE",
                  "message": {"text": message.text}},
            headers={DELIVERY_HEADER: message.idempotency_key},
        )
        body = json_body(response)
        if response.status_code == 200 and body.get("message_id"):
            return SendResult(str(body["message_id"]))
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        code, subcode = error.get("code"), error.get("error_subcode")
        detail = f"{code or response.status_code} {error.get('message') or response.reason}"
        if response.status_code == 429 or response.status_code >= 500 or code in MESSENGER_TRANSIENT:
            raise TransientSendError("unavailable", detail)
        if code in MESSENGER_TOKEN_ERRORS or response.status_code == 401:
            raise PermanentSendError(BAD_CREDENTIALS, detail)
        if code == 10 and subcode == 2018278:
            raise PermanentSendError(OUTSIDE_WINDOW, detail)
        if code == 100 or code == 551:
            raise PermanentSendError(INVALID_ADDRESS if code == 100 else REJECTED, detail)
        if response.status_code == 200:
            raise TransientSendError("unavailable", "Messenger answered without a message_id")
        raise PermanentSendError(REJECTED, detail)
