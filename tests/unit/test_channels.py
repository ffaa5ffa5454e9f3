"""The channel adapters against their providers' real shapes: SMTP against a real aiosmtpd server
on a free port, the HTTP APIs with `responses` answering as Twilio, X and Messenger do (payloads
from their documentation); and the sandbox's stand-ins for them, which must agree."""

from __future__ import annotations

import base64
import json
import re
import socket
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from email import message_from_bytes, policy
from urllib.parse import parse_qs

import pytest
import requests
import responses
from aiosmtpd.controller import Controller

from sandbox.app import create_app as sandbox_app
from sandbox.channels import Outbox, twilio_signature
from sandbox.smtp import sink
from services.campaigns.api.callbacks import twilio_signature as campaigns_twilio_signature
from services.campaigns.channels.base import OutgoingMessage, PermanentSendError, TransientSendError
from services.campaigns.channels.email import WIRE, EmailAdapter, SmtpConfig, build_message, message_id
from services.campaigns.channels.sms import SmsAdapter, SmsConfig, e164
from services.campaigns.channels.social_dm import SocialDmAdapter, SocialDmConfig, choose_handle

DELIVERY = "0190f5b2-6a1e-7c3d-9a4b-1c2d3e4f5a6b"
TENANT = "0190f5b2-0000-7000-8000-000000000001"
UNSUBSCRIBE = "https://campaigns.example/t/u/abc123"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Email over SMTP


class Capture:
    """An aiosmtpd handler keeping what arrives; `reply` answers DATA (a 4xx/5xx to refuse)."""

    def __init__(self) -> None:
        self.envelopes: list = []
        self.peers: list = []  # the client's address and port, per message
        self.reply = "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        self.peers.append(session.peer)
        return self.reply


@pytest.fixture()
def smtp() -> Iterator[tuple[Capture, int]]:
    handler, port = Capture(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def email(address: str = "ada@example.com", delivery_id: str = DELIVERY) -> OutgoingMessage:
    return OutgoingMessage(delivery_id, TENANT, "email", address,
                           {"subject": "Hello Ada", "text": "Hi Ada,\nour offer: https://t.example/c/1",
                            "html": 'Hi Ada,<br>\nour offer: <a href="https://t.example/c/1">https://t.example/c/1</a>'},
                           unsubscribe_url=UNSUBSCRIBE)


def email_adapter(port: int) -> EmailAdapter:
    return EmailAdapter(SmtpConfig.from_env({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port),
                                             "CAMPAIGNS_EMAIL_FROM": "Acme <offers@acme.example>"}))


def test_an_email_is_multipart_alternative_with_one_click_unsubscribe(smtp):
    handler, port = smtp
    result = email_adapter(port).send(email())

    assert result.provider_message_id == f"<{DELIVERY}@liaison>" == message_id(DELIVERY)
    [envelope] = handler.envelopes
    assert envelope.mail_from == "offers@acme.example" and envelope.rcpt_tos == ["ada@example.com"]
    mail = message_from_bytes(envelope.original_content, policy=policy.default)
    assert mail.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in mail.iter_parts()] == ["text/plain", "text/html"]
    assert mail.get_body(("plain",)).get_content().replace("\r\n", "\n").startswith("Hi Ada,\nour offer")
    assert '<a href="https://t.example/c/1">' in mail.get_body(("html",)).get_content()
    assert mail["Subject"] == "Hello Ada" and mail["From"] == "Acme <offers@acme.example>"
    assert mail["To"] == "ada@example.com"
    # RFC 8058: the HTTPS URL in angle brackets, and the one-click marker.
    assert mail["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["Message-ID"] == f"<{DELIVERY}@liaison>"


def test_an_email_in_french_arrives_with_its_accents_and_one_line_subject(smtp):
    handler, port = smtp
    adapter = EmailAdapter(SmtpConfig.from_env({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port),
                                                "CAMPAIGNS_EMAIL_FROM": "Boutique Été <offres@acme.example>"}))
    content = {"subject": "Chloé, -20 %\r\nBcc: eve@example.com", "text": "Bonjour Chloé, à bientôt"}
    adapter.send(OutgoingMessage(DELIVERY, TENANT, "email", "chloe@example.com", content))

    [envelope] = handler.envelopes
    mail = message_from_bytes(envelope.original_content, policy=policy.default)
    assert envelope.mail_from == "offres@acme.example" and envelope.rcpt_tos == ["chloe@example.com"]
    assert mail["Subject"] == "Chloé, -20 % Bcc: eve@example.com" and mail["Bcc"] is None
    assert mail["From"] == "Boutique Été <offres@acme.example>"
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content().strip() == "Bonjour Chloé, à bientôt"


def test_one_connection_carries_many_emails(smtp):
    handler, port = smtp
    adapter = email_adapter(port)
    for n in range(3):
        adapter.send(email(f"user{n}@example.com", str(uuid.uuid4())))
    assert len(handler.envelopes) == 3
    assert len(set(handler.peers)) == 1


def test_sending_again_gives_the_same_message_id(smtp):
    handler, port = smtp
    adapter = email_adapter(port)
    adapter.send(email())
    adapter.send(email())
    ids = {message_from_bytes(e.original_content, policy=policy.default)["Message-ID"] for e in handler.envelopes}
    assert ids == {f"<{DELIVERY}@liaison>"}


def test_a_refused_recipient_is_permanent_and_a_4xx_is_transient(smtp):
    handler, port = smtp
    with pytest.raises(PermanentSendError) as refused:
        email_adapter(port).send(email("nobody@example.com"))
    assert refused.value.reason == "rejected" and "550" in refused.value.detail

    handler.reply = "451 4.3.0 Try again later"
    with pytest.raises(TransientSendError) as later:
        email_adapter(port).send(email())
    assert "451" in later.value.detail


def test_no_smtp_server_is_transient_and_no_host_is_not_configured():
    with pytest.raises(TransientSendError):
        email_adapter(free_port()).send(email())
    with pytest.raises(PermanentSendError) as unset:
        EmailAdapter(SmtpConfig.from_env({})).send(email())
    assert unset.value.reason == "not_configured"
    with pytest.raises(PermanentSendError) as invalid:
        email_adapter(free_port()).send(email("not an address"))
    assert invalid.value.reason == "invalid_address"


def test_the_sandbox_sink_keeps_each_message_id_once(tmp_path):
    store = Outbox(tmp_path / "outbox.sqlite3")
    port = free_port()
    controller = sink(store, "127.0.0.1", port)
    controller.start()
    try:
        adapter = email_adapter(port)
        adapter.send(email())
        adapter.send(email())  # the same delivery again, as after a crash
        adapter.send(email(delivery_id="0190f5b2-6a1e-7c3d-9a4b-000000000002"))
        with pytest.raises(PermanentSendError):
            adapter.send(email("unknown.person@example.com"))
    finally:
        controller.stop()
    items = store.messages("email")
    assert [i["received"] for i in items] == [2, 1]
    first = items[0]["payload"]
    assert first["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first["rcpt_tos"] == ["ada@example.com"] and first["content_type"] == "multipart/alternative"
    assert first["text"].startswith("Hi Ada") and "<a href" in first["html"]


# ---------------------------------------------------------------------------------------------
# SMS over a Twilio-style API

SMS_ENV = {"SMS_API_BASE_URL": "https://api.twilio.com", "SMS_ACCOUNT_SID": "AC123", "SMS_AUTH_TOKEN": "secret",
           "SMS_FROM": "+15005550006"}
MESSAGES_URL = "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages.json"
CALLBACK = "https://campaigns.example/v1/campaigns/callbacks/sms"


def sms(to: str = "+14155552671") -> OutgoingMessage:
    return OutgoingMessage(DELIVERY, TENANT, "sms", to, {"body": "20% off today"}, status_callback=CALLBACK)


def twilio_message(**overrides) -> dict:
    # https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
    return {
        "account_sid": "AC123", "api_version": "2010-04-01", "body": "20% off today",
        "date_created": "Thu, 24 Aug 2023 05:01:45 +0000", "date_sent": None,
        "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000", "direction": "outbound-api", "error_code": None,
        "error_message": None, "from": "+15005550006", "messaging_service_sid": None, "num_media": "0",
        "num_segments": "1", "price": None, "price_unit": "USD", "sid": "SMaaaabbbbccccddddeeeeffff00001111",
        "status": "queued", "subresource_uris": {}, "to": "+14155552671",
        "uri": "/2010-04-01/Accounts/AC123/Messages/SMaaaabbbbccccddddeeeeffff00001111.json", **overrides,
    }


def twilio_error(code: int, message: str, status: int) -> dict:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}


@responses.activate
def test_an_sms_is_posted_in_twilio_shape_with_the_idempotency_token():
    responses.post(MESSAGES_URL, json=twilio_message(price="-0.00750"), status=201)
    result = SmsAdapter(SmsConfig.from_env(SMS_ENV)).send(sms())

    assert result.provider_message_id == "SMaaaabbbbccccddddeeeeffff00001111"
    assert result.cost == Decimal("0.00750")
    request = responses.calls[0].request
    assert request.headers["I-Twilio-Idempotency-Token"] == DELIVERY
    assert request.headers["Authorization"].startswith("Basic ")
    form = {k: v[0] for k, v in parse_qs(request.body).items()}
    assert form == {"To": "+14155552671", "From": "+15005550006", "Body": "20% off today",
                    "StatusCallback": CALLBACK}


@responses.activate
@pytest.mark.parametrize(("status", "body", "kind", "reason"), [
    (400, twilio_error(21211, "Invalid 'To' Phone Number: +1415555", 400), PermanentSendError, "invalid_address"),
    (400, twilio_error(21610, "Attempt to send to unsubscribed recipient", 400), PermanentSendError,
     "invalid_address"),
    (400, twilio_error(30007, "Message filtered", 400), PermanentSendError, "rejected"),
    (401, twilio_error(20003, "Authenticate", 401), PermanentSendError, "bad_credentials"),
    (429, twilio_error(20429, "Too Many Requests", 429), TransientSendError, "unavailable"),
    (503, twilio_error(20503, "Service unavailable", 503), TransientSendError, "unavailable"),
])
def test_twilio_errors_are_transient_or_permanent(status, body, kind, reason):
    responses.post(MESSAGES_URL, json=body, status=status)
    with pytest.raises(kind) as raised:
        SmsAdapter(SmsConfig.from_env(SMS_ENV)).send(sms())
    assert raised.value.reason == reason
    assert str(body["code"]) in raised.value.detail


@responses.activate
def test_an_invalid_number_or_missing_credentials_never_reach_the_provider():
    with pytest.raises(PermanentSendError) as invalid:
        SmsAdapter(SmsConfig.from_env(SMS_ENV)).send(sms("0612345678"))  # national, not E.164
    assert invalid.value.reason == "invalid_address"
    with pytest.raises(PermanentSendError) as unset:
        SmsAdapter(SmsConfig.from_env({})).send(sms())
    assert unset.value.reason == "not_configured"
    assert len(responses.calls) == 0
    assert e164("+33 6 12 34 56 78") == "+33612345678" and e164("+1 555") is None


@responses.activate
def test_a_connection_error_is_transient():
    responses.post(MESSAGES_URL, body=requests.ConnectionError("reset by peer"))
    with pytest.raises(TransientSendError):
        SmsAdapter(SmsConfig.from_env(SMS_ENV)).send(sms())


# ---------------------------------------------------------------------------------------------
# Social DMs: X API v2 and the Messenger Send API

DM_ENV = {"X_DM_BASE_URL": "https://api.x.com", "X_DM_ACCESS_TOKEN": "x-user-token",
          "MESSENGER_BASE_URL": "https://graph.facebook.com/v19.0", "MESSENGER_ACCESS_TOKEN": "page-token"}
X_URL = "https://api.x.com/2/dm_conversations/with/2244994945/messages"
MESSENGER_URL = "https://graph.facebook.com/v19.0/me/messages"


def dm(network: str, address: str) -> OutgoingMessage:
    return OutgoingMessage(DELIVERY, TENANT, "social_dm", address, {"body": "A gift for you"}, network=network)


@responses.activate
def test_an_x_dm_goes_to_the_participant_with_a_bearer_token():
    responses.post(X_URL, status=201, json={"data": {"dm_conversation_id": "1500000000000000001-2244994945",
                                                     "dm_event_id": "1582838260136394758"}})
    result = SocialDmAdapter(SocialDmConfig.from_env(DM_ENV)).send(dm("x", "2244994945"))

    assert result.provider_message_id == "1582838260136394758"
    request = responses.calls[0].request
    assert request.headers["Authorization"] == "Bearer x-user-token"
    assert request.headers["X-Liaison-Delivery-Id"] == DELIVERY
    assert json.loads(request.body) == {"text": "A gift for you"}


@responses.activate
@pytest.mark.parametrize(("status", "body", "kind", "reason"), [
    (403, {"detail": "You are not permitted to send this message.", "title": "Forbidden", "status": 403,
           "type": "about:blank"}, PermanentSendError, "rejected"),
    (401, {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"},
     PermanentSendError, "bad_credentials"),
    (429, {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429},
     TransientSendError, "unavailable"),
])
def test_x_errors(status, body, kind, reason):
    responses.post(X_URL, status=status, json=body)
    with pytest.raises(kind) as raised:
        SocialDmAdapter(SocialDmConfig.from_env(DM_ENV)).send(dm("x", "2244994945"))
    assert raised.value.reason == reason


@responses.activate
def test_a_messenger_dm_is_a_standard_update_to_the_psid():
    responses.post(MESSENGER_URL, json={"recipient_id": "6543210987654321", "message_id": "m_AG5Hz2Uq7tuwNEhXfYYK"})
    result = SocialDmAdapter(SocialDmConfig.from_env(DM_ENV)).send(dm("facebook", "6543210987654321"))

    assert result.provider_message_id == "m_AG5Hz2Uq7tuwNEhXfYYK"
    request = responses.calls[0].request
    assert parse_qs(request.url.split("?", 1)[1]) == {"access_token": ["page-token"]}
    # Promotional content is only allowed in standard messaging, never under a message tag.
    assert json.loads(request.body) == {"recipient": {"id": "6543210987654321"}, "messaging_type": "UPDATE",
                                        "message": {"text": "A gift for you"}}


@responses.activate
@pytest.mark.parametrize(("error", "kind", "reason"), [
    ({"message": "(#10) This message is sent outside of allowed window.", "type": "OAuthException", "code": 10,
      "error_subcode": 2018278, "fbtrace_id": "A1b2"}, PermanentSendError, "outside_messaging_window"),
    ({"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190, "fbtrace_id": "A1b2"},
     PermanentSendError, "bad_credentials"),
    ({"message": "(#613) Calls to this api have exceeded the rate limit.", "type": "OAuthException", "code": 613,
      "fbtrace_id": "A1b2"}, TransientSendError, "unavailable"),
    ({"message": "(#100) No matching user found", "type": "OAuthException", "code": 100, "error_subcode": 2018001,
      "fbtrace_id": "A1b2"}, PermanentSendError, "invalid_address"),
])
def test_messenger_errors(error, kind, reason):
    responses.post(MESSENGER_URL, status=400, json={"error": error})
    with pytest.raises(kind) as raised:
        SocialDmAdapter(SocialDmConfig.from_env(DM_ENV)).send(dm("instagram", "17841400000000000"))
    assert raised.value.reason == reason


def test_dm_without_a_user_id_or_a_token_fails():
    with pytest.raises(PermanentSendError) as no_id:
        SocialDmAdapter(SocialDmConfig.from_env(DM_ENV)).send(dm("x", ""))
    assert no_id.value.reason == "no_address"
    with pytest.raises(PermanentSendError) as unset:
        SocialDmAdapter(SocialDmConfig.from_env({})).send(dm("facebook", "123"))
    assert unset.value.reason == "not_configured"


def test_the_dm_network_is_the_launch_choice_else_x_then_messenger():
    handles = [{"network": "facebook", "handle": "ada.l", "network_user_id": "1"},
               {"network": "linkedin", "handle": "ada", "network_user_id": "2"},
               {"network": "x", "handle": "ada", "network_user_id": "3"}]
    assert choose_handle(handles)["network"] == "x"
    assert choose_handle(handles, "facebook:ada.l")["network"] == "facebook"
    assert choose_handle(handles, "instagram:gone")["network"] == "x"
    assert choose_handle(handles[1:2]) is None


# ---------------------------------------------------------------------------------------------
# The sandbox's stand-ins


@pytest.fixture()
def sandbox(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_STORE", str(tmp_path / "outbox.sqlite3"))
    monkeypatch.setenv("SANDBOX_SMS_CALLBACK_DELAY", "off")
    return sandbox_app({}).test_client()


def test_the_sandbox_sms_endpoint_honours_the_idempotency_token(sandbox):
    url = "/2010-04-01/Accounts/AC123/Messages.json"
    form = {"To": "+14155552671", "From": "+15005550006", "Body": "Hi"}
    auth = {"Authorization": "Basic " + base64.b64encode(b"AC123:sandbox-token").decode()}
    first = sandbox.post(url, data=form, headers={**auth, "I-Twilio-Idempotency-Token": "d-1"})
    again = sandbox.post(url, data=form, headers={**auth, "I-Twilio-Idempotency-Token": "d-1"})
    other = sandbox.post(url, data=form, headers={**auth, "I-Twilio-Idempotency-Token": "d-2"})

    assert first.status_code == again.status_code == 201
    assert first.json["sid"] == again.json["sid"] != other.json["sid"]
    assert first.json["sid"].startswith("SM") and first.json["status"] == "queued"
    outbox = sandbox.get("/sandbox/outbox?channel=sms").json
    assert outbox["count"] == 2 and [i["received"] for i in outbox["items"]] == [2, 1]

    bad = sandbox.post(url, data={**form, "To": "+1555"}, headers=auth)
    assert bad.status_code == 400 and bad.json["code"] == 21211
    refused = sandbox.post(url, data=form, headers={"Authorization": "Basic " + base64.b64encode(
        b"AC123:invalid").decode()})
    assert refused.status_code == 401 and refused.json["code"] == 20003

    assert sandbox.delete("/sandbox/outbox?channel=sms").json == {"deleted": 2}
    assert sandbox.get("/sandbox/outbox").json["count"] == 0


def test_the_sandbox_dm_endpoints_dedupe_by_delivery_header(sandbox):
    headers = {"Authorization": "Bearer sandbox-token", "X-Liaison-Delivery-Id": "d-1"}
    x1 = sandbox.post("/2/dm_conversations/with/2244994945/messages", json={"text": "Hi"}, headers=headers)
    x2 = sandbox.post("/2/dm_conversations/with/2244994945/messages", json={"text": "Hi"}, headers=headers)
    assert x1.status_code == 201 and x1.json == x2.json and x1.json["data"]["dm_event_id"].isdigit()
    body = {"recipient": {"id": "654321"}, "messaging_type": "UPDATE", "message": {"text": "Hi"}}
    m1 = sandbox.post("/v19.0/me/messages?access_token=sandbox-token", json=body,
                      headers={"X-Liaison-Delivery-Id": "d-2"})
    assert m1.status_code == 200 and m1.json["recipient_id"] == "654321" and m1.json["message_id"].startswith("m_")
    tagged = sandbox.post("/v19.0/me/messages?access_token=sandbox-token",
                          json={**body, "messaging_type": "MESSAGE_TAG"})
    assert tagged.status_code == 400 and tagged.json["error"]["code"] == 100
    expired = sandbox.post("/v19.0/me/messages?access_token=expired-1", json=body)
    assert expired.status_code == 400 and expired.json["error"]["code"] == 190
    items = sandbox.get("/sandbox/outbox?channel=social_dm").json["items"]
    assert [(i["payload"]["network"], i["received"]) for i in items] == [("x", 2), ("messenger", 1)]


@responses.activate
def test_the_adapters_speak_to_the_sandbox(sandbox):
    """The SMS and DM adapters against the sandbox app itself, through `responses`."""

    def forward(request):
        path = request.url.split("://", 1)[1].split("/", 1)[1]
        answer = sandbox.open("/" + path, method="POST", data=request.body, headers=dict(request.headers))
        return answer.status_code, {}, answer.get_data()

    for prefix in ("http://sandbox.test/2010-04-01/", "http://sandbox.test/2/", "http://sandbox.test/v19.0/"):
        responses.add_callback(responses.POST, re.compile(prefix + ".*"), callback=forward)
    env = {"SMS_API_BASE_URL": "http://sandbox.test", "SMS_ACCOUNT_SID": "sandbox-token",
           "SMS_AUTH_TOKEN": "sandbox-token", "SMS_FROM": "+15005550006", "X_DM_BASE_URL": "http://sandbox.test",
           "X_DM_ACCESS_TOKEN": "sandbox-token", "MESSENGER_BASE_URL": "http://sandbox.test/v19.0",
           "MESSENGER_ACCESS_TOKEN": "sandbox-token"}
    sms_adapter, dm_adapter = SmsAdapter(SmsConfig.from_env(env)), SocialDmAdapter(SocialDmConfig.from_env(env))

    assert sms_adapter.send(sms()) == sms_adapter.send(sms())  # the same sid: the provider recognised it
    with pytest.raises(PermanentSendError):
        sms_adapter.send(sms("+1555"))
    dm_adapter.send(dm("x", "2244994945"))
    dm_adapter.send(dm("facebook", "654321"))
    counts = {c: sandbox.get(f"/sandbox/outbox?channel={c}").json["count"] for c in ("sms", "social_dm")}
    assert counts == {"sms": 1, "social_dm": 2}


def test_the_sandbox_signs_callbacks_as_campaigns_checks_them():
    # Twilio's documented example: https://www.twilio.com/docs/usage/security#validating-requests
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234", "From": "+12349013030",
              "To": "+18005551212"}
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    expected = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert twilio_signature("12345", url, params) == campaigns_twilio_signature("12345", url, params) == expected


@responses.activate
def test_the_sandbox_reports_delivery_to_the_status_callback_signed(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_STORE", str(tmp_path / "outbox.sqlite3"))
    monkeypatch.setenv("SANDBOX_SMS_CALLBACK_DELAY", "0")
    responses.post(CALLBACK, status=200)
    client = sandbox_app({}).test_client()
    auth = {"Authorization": "Basic " + base64.b64encode(b"AC123:sandbox-token").decode()}
    sent = client.post("/2010-04-01/Accounts/AC123/Messages.json", headers=auth,
                       data={"To": "+14155552671", "From": "+15005550006", "Body": "Hi", "StatusCallback": CALLBACK})
    deadline = time.monotonic() + 5
    while not responses.calls and time.monotonic() < deadline:
        time.sleep(0.02)

    [call] = responses.calls
    form = {k: v[0] for k, v in parse_qs(call.request.body).items()}
    assert form["MessageSid"] == sent.json["sid"] and form["MessageStatus"] == "delivered"
    assert call.request.headers["X-Twilio-Signature"] == campaigns_twilio_signature("sandbox-token", CALLBACK, form)


@pytest.mark.parametrize(("subject", "address", "sender"), [
    ("Jeanne, the winter collection is in", "c1@example.com", "Acme <offers@acme.example>"),
    ("Élodie, la collection d'hiver est là — 20 % de remise", "Élodie Dupont <e@example.com>",
     "Boutique Été <offers@acme.example>"),
    ("x" * 1200, "c1@example.com", "offers@acme.example"),
    ("tabs\tand  double  spaces", "c1@example.com", "offers@acme.example"),
])
def test_an_email_is_written_byte_for_byte_as_the_email_package_writes_it(subject, address, sender):
    """The wire policy's shortcut for one-line ASCII headers changes nothing in what is sent."""
    message = OutgoingMessage(str(uuid.uuid4()), "t", "email", address,
                              {"subject": subject, "text": "Bonjour\nhttps://t.example/c/1", "html": "Bonjour<br>"},
                              unsubscribe_url="https://t.example/t/u/" + "a" * 200)
    mail = build_message(message, sender)
    email_package = policy.compat32.clone(linesep="\r\n", max_line_length=998)
    assert mail.as_bytes(policy=WIRE) == mail.as_bytes(policy=email_package)
