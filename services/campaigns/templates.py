"""Campaign and trigger content: the templates a marketer writes (`Hello {{ contact.first_name }}`,
`{{ link("https://shop.example/offer") }}`) and their rendering for one recipient, in a sandbox.

Variables. A template sees three names: `contact` (first_name, last_name, email, phone, locale,
timezone, attributes: the CRM's own fields), `profile` (city, country, age, profession,
interests, influence {tier, score}, engagement {sentiment, satisfaction}, last_checkin {place,
at}) and `link(url)`, which gives the tracked URL of an http(s) address. `contact_of()` and
`profile_of()` build the first two from an audience row, so every sender passes the same shape.

Mistakes are caught when the content is created, not at send time: a template that does not
parse (with its line), an unknown top-level name (`{{ contcat.first_name }}`), an unknown field
of `contact` or `profile` (`{{ contact.frist_name }}`: `contact.attributes.*` is free-form) or
one that fails on a sample recipient is refused with a 422 naming the field
(`content.email.body`). At send time, a value the recipient lacks renders empty (a None, a
missing attribute, a missing field of a missing section), so a contact without a first name gets
"Hello " rather than no message.

Sandbox. jinja2's ImmutableSandboxedEnvironment refuses underscore attributes (an unsafe
attribute raises here instead of rendering empty) and changes to lists and dicts. On top of it,
a rendering has budgets, so that no template can hang a worker or fill its memory: loop
iterations (every `for` is counted, `range()` included), the size of strings and lists built by
`*`, `+`, `%`, `~`, `join`, `replace`, and of the output; a few filters that pad or build large
values (center, indent, format, batch, slice) are not offered.

Escaping. Templates render as text (autoescape off: an SMS or a subject is not HTML); an email's
`html` part is that text escaped, with line breaks as <br> and its tracked links as <a>: the
only markup in it is ours."""

from __future__ import annotations

import html
import re
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from shared.errors import ValidationFailed

# What each channel's content holds: (required fields, optional fields).
FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "email": (("subject", "body"), ()),
    "sms": (("body",), ()),
    "social_dm": (("body",), ()),
    "web": (("title", "body"), ()),
}
OPTIONAL_CHANNELS = ("web",)  # the inbound offer: present only when the campaign has one

# Source sizes: a subject or title is one line; a body is a message, not a document.
MAX_SOURCE = {"subject": 1_000, "title": 1_000, "body": 50_000}
MAX_OUTPUT = 200_000          # characters of one rendered field
MAX_VALUE = 100_000           # characters (or items) of a string or list built while rendering
MAX_BITS = 4_096              # bits of an integer computed while rendering
MAX_ITERATIONS = 10_000       # loop iterations in one field's rendering
MAX_SECONDS = 2.0             # wall time of one field's rendering
SMS_SEGMENT = 160             # GSM-7 characters of one SMS; beyond, the message is split (and billed) in parts

CONTACT_FIELDS = ("id", "first_name", "last_name", "email", "phone", "locale", "timezone", "attributes")
PROFILE_FIELDS = ("city", "country", "age", "profession", "interests", "influence", "engagement", "last_checkin")
NAMES = ("contact", "profile", "link")

SAMPLE_CONTACT: dict[str, Any] = {
    "id": "00000000-0000-0000-0000-000000000000", "first_name": "Ana", "last_name": "Lima",
    "email": "ana@example.com", "phone": "+33612345678", "locale": "fr-FR", "timezone": "Europe/Paris",
    "attributes": {},
}
SAMPLE_PROFILE: dict[str, Any] = {
    "city": "Lyon", "country": "FR", "age": 34, "profession": "Coach", "interests": ["running", "yoga"],
    "influence": {"tier": "micro", "score": 42.0}, "engagement": {"sentiment": 0.5, "satisfaction": 80.0},
    "last_checkin": {"place": "Lyon Part-Dieu", "at": "2026-01-01T10:00:00Z"},
}
SAMPLE_LINK = "https://t.example/t/c/sample"


class RenderFailed(Exception):
    """A template could not be rendered for one recipient (a value of the wrong type, a budget
    exceeded): the delivery fails with this message as its reason, the campaign goes on."""


# -- budgets -----------------------------------------------------------------------------------
@dataclass
class _Budget:
    iterations: int = MAX_ITERATIONS
    deadline: float = field(default_factory=lambda: time.monotonic() + MAX_SECONDS)

    def spend(self, count: int = 1) -> None:
        self.iterations -= count
        if self.iterations < 0:
            raise SecurityError(f"The template loops more than {MAX_ITERATIONS} times.")
        if time.monotonic() > self.deadline:
            raise SecurityError(f"The template takes more than {MAX_SECONDS:g} s to render.")


_budget: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _spend(count: int = 1) -> None:
    budget = _budget.get()
    if budget is None:  # rendered outside _render (a test, a shell): a fresh budget each time
        budget = _Budget()
        _budget.set(budget)
    budget.spend(count)


def _sized(value: Any) -> Any:
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_VALUE:
        raise SecurityError(f"The template builds a value longer than {MAX_VALUE} characters or items.")
    return value


def _loop(iterable: Any) -> Iterator[Any]:
    """Wraps the iterable of every `for` (see _Environment._parse): each iteration is counted."""
    if isinstance(iterable, ChainableUndefined):
        return
    for item in iterable:
        _spend()
        yield item


def _range(*args: int) -> range:
    numbers = range(*args)
    _spend(0)  # the deadline; the iterations are counted by the loop that uses it
    if len(numbers) > MAX_ITERATIONS:
        raise SecurityError(f"range() is limited to {MAX_ITERATIONS} numbers.")
    return numbers


def _concat(parts: list[Any]) -> str:
    """The `~` operator, size-checked before the string is built."""
    texts = [str(part) for part in parts]
    if sum(len(t) for t in texts) > MAX_VALUE:
        raise SecurityError(f"The template builds a value longer than {MAX_VALUE} characters or items.")
    return "".join(texts)


def _join(value: Iterable[Any], separator: str = "", attribute: Any = None) -> str:
    items = [str(item) for item in value] if attribute is None else [str(item[attribute]) for item in value]
    if sum(len(i) for i in items) + len(separator) * len(items) > MAX_VALUE:
        raise SecurityError(f"The template builds a value longer than {MAX_VALUE} characters or items.")
    return separator.join(items)


def _replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text = str(value)
    occurrences = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    _sized_length(len(text) + occurrences * max(0, len(new) - len(old)))
    return text.replace(old, new, -1 if count is None else count)


def _sized_length(length: int) -> None:
    if length > MAX_VALUE:
        raise SecurityError(f"The template builds a value longer than {MAX_VALUE} characters or items.")


def _sized_bits(bits: int) -> None:
    if bits > MAX_BITS:
        raise SecurityError("The template computes a number that is too large.")


# Width or precision of 4+ digits in a %-format or str.format: padding to build huge strings.
_WIDE_FORMAT = re.compile(r"%[^a-zA-Z%]*\d{4,}|\{[^}]*:[^}]*\d{4,}[^}]*\}")


class _Guard(NodeTransformer):
    def visit_For(self, node: nodes.For) -> nodes.For:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_loop", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Filter:
        self.generic_visit(node)
        return nodes.Filter(nodes.List(node.nodes, lineno=node.lineno), "_concat", [], [], None, None,
                            lineno=node.lineno)


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+", "//"})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Every `for` iterates through `_loop` and every `~` goes through `_concat`, so that
        loops and concatenations count against the rendering's budgets."""
        return _Guard().visit(super()._parse(source, name, filename))

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"Access to attribute {attribute!r} is not allowed in a template.")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _spend(0)
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                    _sized_length(len(seq) * max(times, 0))
            if isinstance(left, int) and isinstance(right, int):
                _sized_bits(left.bit_length() + right.bit_length())
            return left * right
        if operator == "**":
            if isinstance(right, (int, float)) and abs(right) > 100:
                raise SecurityError("Exponents are limited to 100 in a template.")
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                _sized_bits(left.bit_length() * right)
            return left ** right
        if operator == "%":
            if isinstance(left, str) and _WIDE_FORMAT.search(left):
                raise SecurityError("Format widths are limited to 3 digits in a template.")
            return _sized(left % right)
        if operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                _sized_length(len(left) + len(right))
            return left + right
        return left // right

    def format_string(self, s: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                      format_func: Callable[..., Any] | None = None) -> str:
        if _WIDE_FORMAT.search(s):
            raise SecurityError("Format widths are limited to 3 digits in a template.")
        return _sized(super().format_string(s, args, kwargs, format_func))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend(0)
        if any(isinstance(a, int) and not isinstance(a, bool) and abs(a) > MAX_VALUE
               for a in (*args, *kwargs.values())):
            raise SecurityError(f"Numbers passed to a call are limited to {MAX_VALUE} in a template.")
        owner, name = getattr(__obj, "__self__", None), getattr(__obj, "__name__", "")
        if isinstance(owner, str) and name == "replace":
            return _replace(owner, *args, **kwargs)
        if isinstance(owner, str) and name == "join":
            return _join(args[0] if args else (), owner)
        return _sized(super().call(__context, __obj, *args, **kwargs))


def _finalize(value: Any) -> Any:
    """What `{{ }}` prints: nothing for a value the recipient lacks."""
    return "" if value is None else value


def _environment() -> _Environment:
    env = _Environment(undefined=ChainableUndefined, autoescape=False, finalize=_finalize,
                       keep_trailing_newline=True)
    for unsafe in ("center", "indent", "format", "batch", "slice", "urlize", "wordwrap", "filesizeformat",
                   "xmlattr", "pprint", "random"):
        env.filters.pop(unsafe, None)
    env.filters.update(_loop=_loop, _concat=_concat, join=_join, replace=_replace)
    env.globals.pop("lipsum", None)
    env.globals["range"] = _range
    return env


_ENV = _environment()


# -- the template context ----------------------------------------------------------------------
def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def contact_of(row: dict[str, Any]) -> dict[str, Any]:
    """`contact` for a template, from an audience row (campaigns.audience)."""
    return {
        "id": str(row["contact_id"]) if row.get("contact_id") is not None else None,
        **{name: row.get(name) for name in CONTACT_FIELDS if name not in ("id", "attributes")},
        "attributes": row.get("attributes") or {},
    }


def _age(row: dict[str, Any], today: date) -> Any:
    born = row.get("birth_date")
    if isinstance(born, date):
        return today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    low, high = row.get("age_min"), row.get("age_max")
    if low is None:
        return None
    if high is None:
        return f"{low}+"
    return low if low == high else f"{low}-{high}"


def profile_of(row: dict[str, Any], today: date | None = None) -> dict[str, Any]:
    """`profile` for a template, from an audience row: `age` is exact (a number) from a birth
    date, else the profile's range as enrichment gives it ("30-39", "65+")."""
    return {
        "city": row.get("city"),
        "country": row.get("country"),
        "age": _age(row, today or date.today()),
        "profession": row.get("profession"),
        "interests": list(row.get("interests") or []),
        "influence": {"tier": row.get("influence_tier"), "score": row.get("influence_score")},
        "engagement": {"sentiment": row.get("sentiment"), "satisfaction": row.get("satisfaction")},
        "last_checkin": {"place": row.get("last_checkin_place"), "at": _iso(row.get("last_checkin_at"))},
    }


# -- checking ----------------------------------------------------------------------------------
def _line_of(exc: BaseException) -> int | None:
    """The template line an error was raised on: jinja2 rewrites tracebacks to show it."""
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == "<template>"]
    return lines[-1] if lines else getattr(exc, "lineno", None)


def _at_line(message: str, line: int | None) -> str:
    return f"Line {line}: {message}" if line else message


def _static_problems(tree: nodes.Template) -> list[str]:
    """Names and fields that cannot be right, whatever the recipient."""
    problems = []
    allowed = set(NAMES) | set(_ENV.globals)
    for name in sorted(meta.find_undeclared_variables(tree) - allowed):
        problems.append(f"Unknown variable {name!r}: a template may use {', '.join(NAMES)}.")
    known = {"contact": CONTACT_FIELDS, "profile": PROFILE_FIELDS}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        key = node.attr if isinstance(node, nodes.Getattr) else (
            node.arg.value if isinstance(node.arg, nodes.Const) else None)
        if isinstance(key, str) and key.startswith("_"):
            problems.append(_at_line(f"Access to attribute {key!r} is not allowed.", node.lineno))
        elif isinstance(node.node, nodes.Name) and node.node.name in known and isinstance(key, str) \
                and key not in known[node.node.name]:
            fields = ", ".join(known[node.node.name])
            problems.append(_at_line(f"{node.node.name} has no field {key!r} (it has: {fields}).", node.lineno))
    return problems


def _check(source: Any, kind: str) -> list[str]:
    if not isinstance(source, str):
        return ["Must be a string (a template)."]
    if not source.strip():
        return ["Must not be empty."]
    if len(source) > MAX_SOURCE[kind]:
        return [f"Must be at most {MAX_SOURCE[kind]} characters."]
    try:
        problems = _static_problems(_ENV.parse(source))
    except TemplateSyntaxError as exc:  # and TemplateAssertionError: an unknown filter or test
        return [_at_line(exc.message or "Invalid template.", exc.lineno)]
    if problems:
        return problems
    try:
        _render(source, SAMPLE_CONTACT, SAMPLE_PROFILE, lambda url: SAMPLE_LINK)
    except RenderFailed as exc:
        return [str(exc)]
    return []


def validate_content(content: Any, channels: list[str]) -> None:
    """Refuses (422, errors keyed `content.<channel>.<field>`) content that lacks a template a
    channel of `channels` needs, or holds one that does not parse, names an unknown variable or
    field, or fails on a sample recipient. `web` (the inbound offer) is optional."""
    if not isinstance(content, dict):
        raise ValidationFailed({"content": ["Must be an object: {channel: {field: template}}."]})
    problems: dict[str, list[str]] = {}
    for channel in channels:
        if channel not in content and channel in FIELDS:
            problems[f"content.{channel}"] = [f"Missing: {channel} is one of the channels."]
    for channel, fields in content.items():
        path = f"content.{channel}"
        if channel not in FIELDS:
            problems[path] = [f"Unknown channel: one of {', '.join(FIELDS)}."]
            continue
        if not isinstance(fields, dict):
            problems[path] = ["Must be an object: {field: template}."]
            continue
        required, optional = FIELDS[channel]
        for name in fields:
            if name not in required + optional:
                problems[f"{path}.{name}"] = [f"Unknown field: {channel} content has {', '.join(required)}."]
        for name in required:
            if name not in fields or fields[name] is None:
                problems[f"{path}.{name}"] = ["Missing data for required field."]
                continue
            found = _check(fields[name], name)
            if found:
                problems[f"{path}.{name}"] = found
    if problems:
        raise ValidationFailed(problems, detail="The campaign's content has invalid templates.")


def content_warnings(content: dict[str, Any]) -> dict[str, list[str]]:
    """Advice that does not refuse the content: an SMS whose sample rendering takes more than
    one segment (it is sent in several parts, each billed)."""
    body = (content.get("sms") or {}).get("body")
    if not isinstance(body, str):
        return {}
    try:
        text = _render(body, SAMPLE_CONTACT, SAMPLE_PROFILE, lambda url: SAMPLE_LINK)
    except RenderFailed:
        return {}
    if len(text) > SMS_SEGMENT:
        return {"content.sms.body": [
            f"Renders to {len(text)} characters for a sample contact: more than one SMS ({SMS_SEGMENT})."]}
    return {}


# -- rendering ---------------------------------------------------------------------------------
def _tracked(link: Callable[[str], str], made: list[str]) -> Callable[[Any], str]:
    def tracked_link(url: Any) -> str:
        if not isinstance(url, str) or urlsplit(url).scheme.lower() not in ("http", "https") \
                or not urlsplit(url).netloc:
            raise SecurityError(f"link() takes an http or https URL, not {str(url)[:100]!r}.")
        tracked = link(url)
        made.append(tracked)
        return tracked

    return tracked_link


@lru_cache(maxsize=512)
def _compiled(source: str) -> Template:
    """A campaign renders the same few templates for each of its recipients: compiled once."""
    return _ENV.from_string(source)


def _render(source: str, contact: dict[str, Any], profile: dict[str, Any], link: Callable[[str], str],
            made: list[str] | None = None) -> str:
    token = _budget.set(_Budget())
    try:
        template = _compiled(source)
        output: list[str] = []
        length = 0
        tracked_link = _tracked(link, made if made is not None else [])
        for chunk in template.generate(contact=contact, profile=profile, link=tracked_link):
            length += len(chunk)
            if length > MAX_OUTPUT:
                raise SecurityError(f"The template renders more than {MAX_OUTPUT} characters.")
            output.append(chunk)
        return "".join(output)
    except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError, AttributeError,
            RecursionError) as exc:
        # Errors of the template's own expressions (`{{ profile.age + "x" }}`, `{{ 1 / 0 }}`),
        # reported with their line; anything else is a bug of ours and propagates.
        message = exc.message if isinstance(exc, TemplateError) and exc.message else str(exc)
        raise RenderFailed(_at_line(message, _line_of(exc))) from exc
    finally:
        _budget.reset(token)


def text_to_html(text: str, links: Iterable[str]) -> str:
    """The text, escaped, with line breaks as <br> and each tracked link as an <a>."""
    escaped = html.escape(text, quote=True)
    targets = sorted({html.escape(link, quote=True) for link in links}, key=len, reverse=True)
    # One pass, leftmost link first and the longest where two start together. Not a regular
    # expression: the links carry each recipient's token, so one would be compiled per email.
    parts, at = [], 0
    while targets:
        found = [(start, -len(t), t) for t in targets if (start := escaped.find(t, at)) != -1]
        if not found:
            break
        start, _, link = min(found)
        parts += [escaped[at:start], f'<a href="{link}">{link}</a>']
        at = start + len(link)
    parts.append(escaped[at:])
    return "".join(parts).replace("\r\n", "\n").replace("\n", "<br>\n")


def render_content(channel: str, content: dict[str, Any], contact: dict[str, Any], profile: dict[str, Any],
                   link: Callable[[str], str]) -> dict[str, str]:
    """The channel's fields rendered for one recipient: email → subject, text, html; sms and
    social_dm → body; web → title, body, html. `link(url)` gives the tracked URL of `url`
    (tracking.click_url); the template may only link to http(s) addresses. Raises RenderFailed."""
    fields = content[channel]
    made: list[str] = []
    if channel == "email":
        text = _render(fields["body"], contact, profile, link, made)
        subject = _render(fields["subject"], contact, profile, link)
        # A subject is one header line: line breaks in it would be a header injection.
        return {"subject": " ".join(subject.split()), "text": text, "html": text_to_html(text, made)}
    if channel == "web":
        body = _render(fields["body"], contact, profile, link, made)
        return {"title": _render(fields["title"], contact, profile, link), "body": body,
                "html": text_to_html(body, made)}
    if channel in ("sms", "social_dm"):
        return {"body": _render(fields["body"], contact, profile, link)}
    raise ValueError(f"unknown channel {channel!r}")
