"""Campaign templates: rendering for a recipient, the sandbox and its budgets, what validation
reports (with the field's path and the template's line), tracked links and HTML escaping."""

from __future__ import annotations

from datetime import date

import pytest

from services.campaigns import templates
from services.campaigns.templates import RenderFailed, render_content, validate_content
from shared.errors import ValidationFailed

CONTACT = {"id": "c1", "first_name": "Ana", "last_name": "Lima", "email": "ana@example.com", "phone": None,
           "locale": "fr-FR", "timezone": "Europe/Paris", "attributes": {"tier": "gold"}}
PROFILE = {"city": "Lyon", "country": "FR", "age": 34, "profession": None, "interests": ["running"],
           "influence": {"tier": "micro", "score": 40.0}, "engagement": {"sentiment": None, "satisfaction": None},
           "last_checkin": {"place": None, "at": None}}


def tracked(url: str) -> str:
    return "https://go.example/t/c/TOKEN?" + url.split("//", 1)[1]


def sms(body: str) -> str:
    return render_content("sms", {"sms": {"body": body}}, CONTACT, PROFILE, tracked)["body"]


def errors_of(content: dict, channels: list[str]) -> dict:
    with pytest.raises(ValidationFailed) as caught:
        validate_content(content, channels)
    return caught.value.extra["errors"]


def test_renders_contact_and_profile_fields_and_missing_values_render_empty():
    assert sms("Hi {{ contact.first_name }} from {{ profile.city }} ({{ contact.attributes.tier }})") == \
        "Hi Ana from Lyon (gold)"
    # None, a missing attribute, a field of a missing section: nothing, not "None" nor an error.
    assert sms("[{{ contact.phone }}|{{ contact.attributes.shoe_size }}|{{ contact.attributes.a.b }}"
               "|{{ profile.profession }}]") == "[|||]"
    assert sms("{% if profile.age >= 30 %}30+{% endif %}{% for i in profile.interests %} {{ i }}{% endfor %}") == \
        "30+ running"


def test_email_renders_subject_text_and_escaped_html_with_links():
    body = "<b>Hi</b> {{ contact.first_name }} & co\nSee {{ link('https://shop.example/?a=1&b=2') }}"
    content = {"email": {"subject": "Hello\r\nBcc: x@evil.example {{ contact.first_name }}", "body": body}}
    contact = {**CONTACT, "first_name": "<script>"}
    out = render_content("email", content, contact, PROFILE, tracked)
    assert out["subject"] == "Hello Bcc: x@evil.example <script>"  # one header line
    assert out["text"] == "<b>Hi</b> <script> & co\nSee https://go.example/t/c/TOKEN?shop.example/?a=1&b=2"
    assert out["html"] == (
        "&lt;b&gt;Hi&lt;/b&gt; &lt;script&gt; &amp; co<br>\nSee "
        '<a href="https://go.example/t/c/TOKEN?shop.example/?a=1&amp;b=2">'
        "https://go.example/t/c/TOKEN?shop.example/?a=1&amp;b=2</a>")
    web = render_content("web", {"web": {"title": "For {{ contact.first_name }}", "body": "x"}}, CONTACT, PROFILE,
                         tracked)
    assert web == {"title": "For Ana", "body": "x", "html": "x"}


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://files.example/x", "//evil.example", "https://",
                                 "mailto:a@b.example"])
def test_link_takes_only_http_and_https(url):
    with pytest.raises(RenderFailed, match="http or https"):
        sms(f"{{{{ link({url!r}) }}}}")
    assert "content.sms.body" in errors_of({"sms": {"body": f"{{{{ link({url!r}) }}}}"}}, ["sms"])


def test_link_of_an_http_url_is_the_tracked_url():
    assert sms("{{ link('http://shop.example/a') }}") == "https://go.example/t/c/TOKEN?shop.example/a"


@pytest.mark.parametrize("source", [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ contact.__class__ }}",
    "{{ link.__globals__ }}",
    "{{ contact['__class__'] }}",
    "{{ cycler.__init__.__globals__ }}",
])
def test_sandbox_escapes_are_refused(source):
    with pytest.raises(RenderFailed):
        sms(source)
    assert "content.sms.body" in errors_of({"sms": {"body": source}}, ["sms"])


@pytest.mark.parametrize("source", [
    "{% for i in range(100) %}{% for j in range(100) %}{% for k in range(100) %}{% endfor %}{% endfor %}{% endfor %}",
    "{{ range(100000000)|list }}",
    "{{ 'x' * 100000000 }}",
    "{{ 'x'.ljust(100000000) }}",
    "{{ '%0999999d' % 1 }}",
    "{{ '{:9999999}'.format(1) }}",
    "{{ 9 ** 100 ** 100 }}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "{% set ns = namespace(x=3) %}{% for i in range(64) %}{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x }}",
    "{{ ('a' * 100)|replace('a', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb')"
    "|replace('b', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccc') }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
])
def test_budgets_stop_templates_that_would_hang_or_fill_memory(source):
    with pytest.raises(RenderFailed):
        sms(source)


def test_filters_that_build_large_values_are_not_offered():
    assert errors_of({"sms": {"body": "{{ 'a'|center(10) }}"}}, ["sms"]) == {
        "content.sms.body": ["Line 1: No filter named 'center'."]}
    assert "lipsum" in errors_of({"sms": {"body": "{{ lipsum() }}"}}, ["sms"])["content.sms.body"][0]


def test_validation_names_the_field_and_the_line():
    errors = errors_of({
        "email": {"subject": "Hi {{ contact.first_name", "body": "line 1\nline 2 {% if %}"},
        "sms": {"body": "{{ contcat.first_name }}"},
        "social_dm": {"body": "ok\n\n{{ contact.frist_name }}"},
    }, ["email", "sms", "social_dm"])
    assert errors["content.email.subject"][0].startswith("Line 1: ")
    assert errors["content.email.body"][0].startswith("Line 2: ")
    assert errors["content.sms.body"] == ["Unknown variable 'contcat': a template may use contact, profile, link."]
    assert errors["content.social_dm.body"][0].startswith("Line 3: contact has no field 'frist_name'")


def test_validation_renders_a_sample_recipient():
    errors = errors_of({"sms": {"body": "ok\n{{ profile.age + 'years' }}"}}, ["sms"])
    assert errors["content.sms.body"][0].startswith("Line 2: unsupported operand")
    validate_content({"sms": {"body": "{{ contact.attributes.anything.at.all }}{% set x = 1 %}{{ x }}"}}, ["sms"])


def test_validation_of_the_content_shape():
    errors = errors_of({"email": {"subject": "x", "html": "<b>"}, "fax": {"body": "x"}, "web": {"title": "t"},
                        "sms": "text"}, ["email", "sms", "social_dm"])
    assert errors == {
        "content.social_dm": ["Missing: social_dm is one of the channels."],
        "content.email.html": ["Unknown field: email content has subject, body."],
        "content.email.body": ["Missing data for required field."],
        "content.fax": ["Unknown channel: one of email, sms, social_dm, web."],
        "content.web.body": ["Missing data for required field."],
        "content.sms": ["Must be an object: {field: template}."],
    }
    assert errors_of({"sms": {"body": ""}}, ["sms"]) == {"content.sms.body": ["Must not be empty."]}
    assert errors_of({"sms": {"body": 3}}, ["sms"]) == {"content.sms.body": ["Must be a string (a template)."]}
    assert errors_of({"email": {"subject": "x" * 1001, "body": "b"}}, ["email"]) == {
        "content.email.subject": ["Must be at most 1000 characters."]}
    assert errors_of([], ["sms"]) == {"content": ["Must be an object: {channel: {field: template}}."]}
    validate_content({"email": {"subject": "Hi", "body": "Body"}, "web": {"title": "T", "body": "B"}}, ["email"])


def test_a_long_sms_is_a_warning_not_an_error():
    content = {"sms": {"body": "{{ contact.first_name }} " + "x" * 200}}
    validate_content(content, ["sms"])
    assert list(templates.content_warnings(content)) == ["content.sms.body"]
    assert templates.content_warnings({"sms": {"body": "short"}}) == {}


def test_context_from_an_audience_row():
    row = {"contact_id": "c1", "first_name": "Ana", "email": "a@example.com", "attributes": None,
           "birth_date": date(1990, 5, 17), "age_min": 30, "age_max": 39, "city": "Lyon",
           "influence_tier": "micro", "influence_score": 40.0, "interests": ["yoga"]}
    assert templates.contact_of(row)["attributes"] == {} and templates.contact_of(row)["id"] == "c1"
    profile = templates.profile_of(row, today=date(2026, 5, 16))
    assert profile["age"] == 35 and profile["influence"] == {"tier": "micro", "score": 40.0}
    assert templates.profile_of({"age_min": 30, "age_max": 39})["age"] == "30-39"
    assert templates.profile_of({"age_min": 65, "age_max": None})["age"] == "65+"
    assert set(profile) == set(templates.PROFILE_FIELDS)
