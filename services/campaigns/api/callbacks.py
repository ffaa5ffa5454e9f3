"""Providers' reports on the messages campaigns sent: the SMS provider's status callback.

Public (no API key: the provider cannot send one); instead each request must carry a valid
`X-Twilio-Signature`, the base64 HMAC-SHA1, keyed by SMS_AUTH_TOKEN, of the callback URL
(CAMPAIGNS_PUBLIC_URL + the path, which is the URL the channel worker gave the provider) followed
by the form parameters' names and values sorted by name. A missing or wrong signature is 403, and
so is every callback while SMS_AUTH_TOKEN is unset.

`MessageStatus` delivered makes a sent delivery `delivered` (delivered_at); failed or undelivered
makes it `failed` with reason `undelivered: <ErrorCode>`. Other statuses (queued, sent, ...) and
unknown MessageSids are acknowledged with 200 and change nothing, so the provider stops retrying.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping

from flask import Response, request

from services.campaigns import tracking
from services.campaigns.sending import SMS_CALLBACK_PATH, set_status
from shared import errors
from shared.events import utcnow
from shared.web import Blueprint, service, unit_of_work

blp = Blueprint("callbacks", __name__, url_prefix="/v1/campaigns/callbacks",
                description="Providers' delivery reports (no API key: signed by the provider)")

FAILED = frozenset({"failed", "undelivered"})


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    payload = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def _signed_by_provider() -> bool:
    token = os.environ.get("SMS_AUTH_TOKEN", "").strip()
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not signature:
        return False
    url = tracking.public_url(service().settings) + SMS_CALLBACK_PATH
    if request.query_string:
        url += "?" + request.query_string.decode()
    params = {name: request.form[name] for name in request.form}
    return hmac.compare_digest(twilio_signature(token, url, params), signature)


@blp.route("/sms", methods=["POST"])
@blp.doc(security=[], summary="SMS status callback",
         description="The SMS provider's delivery report (Twilio's StatusCallback: form-encoded, signed with "
                     "X-Twilio-Signature). 200 whether or not the message is known; 403 for a bad signature.",
         responses={"200": {"description": "Acknowledged"}, "403": "FORBIDDEN"})
def sms_status() -> Response:
    if not _signed_by_provider():
        raise errors.Forbidden("The request is not signed by the SMS provider.")
    sid, status = request.form.get("MessageSid", ""), request.form.get("MessageStatus", "")
    if sid and status in FAILED | {"delivered"}:
        with unit_of_work() as uow:
            delivery = uow.execute(
                "SELECT tenant_id, id FROM campaigns.deliveries WHERE provider_message_id = %s AND channel = 'sms'",
                (sid,),
            ).fetchone()
            if delivery is not None:
                tenant_id, delivery_id = str(delivery["tenant_id"]), str(delivery["id"])
                if status == "delivered":
                    set_status(uow, tenant_id, delivery_id, "delivered", only_from=("sent",), delivered_at=utcnow())
                else:
                    reason = f"undelivered: {request.form.get('ErrorCode') or status}"
                    set_status(uow, tenant_id, delivery_id, "failed", reason, only_from=("sent", "delivered"))
    return Response(status=200)
