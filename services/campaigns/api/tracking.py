"""The tracking endpoints recipients reach from their messages: the open pixel, tracked links and
one-click unsubscribe. Public: no API key (the signed token is the authority); a token that is
not ours, or whose delivery is gone, is 404.

Unsubscribe follows RFC 8058: a GET (a person opening the link, or a mail or security scanner
prefetching it) only shows a page with a button; the POST unsubscribes. Mail clients that honour
`List-Unsubscribe-Post: List-Unsubscribe=One-Click` POST that body straight to the URL; the
page's button posts the same. Any POST to a valid token unsubscribes (the body is not required)."""

from __future__ import annotations

import html

from flask import Response, request

from services.campaigns import tracking
from shared import errors
from shared.web import Blueprint, service, unit_of_work

blp = Blueprint("tracking", __name__, url_prefix="/t",
                description="Opens, clicks and one-click unsubscribe, from the recipients' messages (no API key)")

# A transparent 1x1 GIF.
PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
         b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
NO_STORE = {"Cache-Control": "no-store, max-age=0", "Referrer-Policy": "no-referrer"}
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self';"
                               " frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
WHAT = {"email": "marketing emails", "sms": "marketing text messages", "social_dm": "marketing direct messages"}
PUBLIC = {"security": []}


def _claims(token: str, kind: str) -> tracking.Claims:
    claims = tracking.read(service().settings.secret_key, token)
    if claims is None or claims.kind != kind:
        raise errors.NotFound("This link is not valid.")
    return claims


def _gone() -> errors.NotFound:
    return errors.NotFound("This link is no longer valid.")


@blp.route("/o/<token>", methods=["GET"])
@blp.doc(**PUBLIC, summary="Open pixel",
         description="A 1x1 GIF; counts an open of the delivery. 404 for a token that is not valid.",
         responses={"200": {"description": "A 1x1 GIF", "content": {"image/gif": {}}}, "404": "NOT_FOUND"})
def opened(token: str) -> Response:
    claims = _claims(token, "o")
    if request.method == "GET":  # a HEAD (a scanner checking the image) counts nothing
        with unit_of_work() as uow:
            if not tracking.record_open(uow, claims):
                raise _gone()
    return Response(PIXEL, mimetype="image/gif", headers=NO_STORE)


@blp.route("/c/<token>", methods=["GET"])
@blp.doc(**PUBLIC, summary="Tracked link",
         description="Counts a click (and an open, if none was seen), then redirects to the signed target. "
                     "404 for a token that is not valid.",
         responses={"302": {"description": "To the link's target"}, "404": "NOT_FOUND"})
def clicked(token: str) -> Response:
    claims = _claims(token, "c")
    if request.method == "GET":
        with unit_of_work() as uow:
            if not tracking.record_click(uow, claims):
                raise _gone()
    # Only the target inside the signed token: there is no way to make this redirect elsewhere.
    return Response(status=302, headers={"Location": claims.target or "", **NO_STORE})


def _page(title: str, message: str, *, button: str | None = None) -> Response:
    form = (f'<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit">{html.escape(button)}</button></form>') if button else ""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;line-height:1.5}}
button{{font-size:1rem;padding:.6rem 1.2rem;cursor:pointer}}</style></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>{form}</body></html>
"""
    return Response(body, mimetype="text/html", headers=PAGE_HEADERS)


def _done(channel: str) -> Response:
    return _page("You are unsubscribed", f"You will no longer receive {WHAT[channel]} from us.")


@blp.route("/u/<token>", methods=["GET", "POST"])
@blp.doc(**PUBLIC, summary="One-click unsubscribe (RFC 8058)",
         description="GET shows a page with a button and changes nothing; POST (the button, or a mail client's "
                     "`List-Unsubscribe=One-Click`) withdraws the consent for the message's channel at once and "
                     "has identity record the withdrawal in the consent ledger. Repeating it changes nothing. "
                     "404 for a token that is not valid.",
         responses={"200": {"description": "An HTML page", "content": {"text/html": {}}}, "404": "NOT_FOUND"})
def unsubscribe(token: str) -> Response:
    claims = _claims(token, "u")
    if request.method == "POST":
        with unit_of_work() as uow:
            done = tracking.unsubscribe(uow, claims)
        if done is None:
            raise _gone()
        return _done(done["channel"])
    with unit_of_work(read_only=True) as uow:
        state = tracking.subscription(uow, claims)
    if state is None:
        raise _gone()
    if state["unsubscribed"]:
        return _done(state["channel"])
    return _page("Unsubscribe?", f"Stop receiving {WHAT[state['channel']]} from us.", button="Unsubscribe")
