"""Social handles in the one form `resolve` matches on.

People paste handles every way: `@Foo`, ` foo `, `https://twitter.com/Foo`, `x.com/foo?s=20`,
`https://www.instagram.com/foo/`, `linkedin.com/in/jane-doe`, `tiktok.com/@foo`. Each reduces to
the bare handle, case-folded on every network here, since all five treat handles case-insensitively.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

NETWORKS = ("x", "facebook", "instagram", "linkedin", "tiktok")
# Networks whose API lets a business send a direct message to a person.
DM_NETWORKS = ("x", "facebook", "instagram")


@dataclass(frozen=True)
class NetworkRules:
    hosts: tuple[str, ...]
    pattern: re.Pattern[str]
    path_prefix: str = ""  # e.g. LinkedIn profiles live under /in/
    reserved: tuple[str, ...] = ()


RULES = {
    "x": NetworkRules(
        ("twitter.com", "x.com", "mobile.twitter.com", "mobile.x.com"),
        re.compile(r"^[a-z0-9_]{1,15}$"),
        reserved=("home", "search", "explore", "intent", "share", "i", "hashtag"),
    ),
    "facebook": NetworkRules(
        ("facebook.com", "m.facebook.com", "fb.com", "web.facebook.com"),
        re.compile(r"^[a-z0-9.]{1,50}$"),
        reserved=("pages", "groups", "events", "sharer", "watch"),
    ),
    "instagram": NetworkRules(
        ("instagram.com", "instagr.am"),
        re.compile(r"^[a-z0-9._]{1,30}$"),
        reserved=("p", "reel", "explore", "stories", "accounts"),
    ),
    "linkedin": NetworkRules(
        ("linkedin.com",),
        re.compile(r"^[\w-]{3,100}$"),
        path_prefix="in",
    ),
    "tiktok": NetworkRules(
        ("tiktok.com", "m.tiktok.com"),
        re.compile(r"^[a-z0-9._]{2,24}$"),
    ),
}


class InvalidHandle(ValueError):
    pass


def _from_url(network: str, text: str) -> str:
    rules = RULES[network]
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").lower()
    except ValueError:  # "]/" reads as a broken IPv6 host
        raise InvalidHandle(f"{text!r} is not a {network} profile address") from None
    if host.startswith("www."):
        host = host[4:]
    if host not in rules.hosts:
        raise InvalidHandle(f"{parts.hostname} is not a {network} profile address")
    segments = [s for s in parts.path.split("/") if s]
    if network == "facebook" and segments[:1] == ["profile.php"]:
        ids = parse_qs(parts.query).get("id")
        if ids:
            return ids[0]
    if rules.path_prefix:
        if len(segments) < 2 or segments[0].lower() != rules.path_prefix:
            raise InvalidHandle(f"a {network} profile address looks like {rules.hosts[0]}/{rules.path_prefix}/name")
        segments = segments[1:]
    if not segments or segments[0].lower() in rules.reserved:
        raise InvalidHandle(f"{text} is not a {network} profile address")
    return segments[0]


def normalize(network: str, raw: str) -> str:
    """The canonical handle for `raw` on `network`; raises InvalidHandle with a reason."""
    if network not in RULES:
        raise InvalidHandle(f"unknown network {network!r}; one of {', '.join(NETWORKS)}")
    text = raw.strip()
    looks_like_url = "/" in text or any(text.lower().startswith(h) for h in RULES[network].hosts) \
        or text.lower().startswith(("http:", "https:", "www."))
    if looks_like_url:
        text = _from_url(network, text)
    text = text.strip().lstrip("@").casefold()
    if not RULES[network].pattern.match(text):
        raise InvalidHandle(f"{raw.strip()!r} is not a valid {network} handle")
    return text
