"""Marshmallow fields shared by identity's schemas."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

import marshmallow as ma

from services.identity.contacts import normalize_email, normalize_phone

LOCALE_PATTERN = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


@lru_cache(maxsize=1)
def known_time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


class Email(ma.fields.String):
    """Trimmed, lower-cased email address."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        try:
            return normalize_email(super()._deserialize(value, attr, data, **kwargs))
        except ValueError as exc:
            raise ma.ValidationError(str(exc)) from None


class Phone(ma.fields.String):
    """An E.164 phone number; spaces, dots, dashes and brackets are removed first."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        try:
            return normalize_phone(super()._deserialize(value, attr, data, **kwargs))
        except ValueError as exc:
            raise ma.ValidationError(str(exc)) from None


class Locale(ma.fields.String):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not LOCALE_PATTERN.match(text):
            raise ma.ValidationError("Not a BCP 47 language tag (e.g. fr-FR).")
        return text.replace("_", "-")


class TimeZone(ma.fields.String):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if text not in known_time_zones():
            raise ma.ValidationError("Not an IANA time zone (e.g. Europe/Paris).")
        return text


class EachRow(ma.fields.List):
    """A list documented as a list of `inner` but loaded as raw rows, so that a bulk endpoint can
    validate each row on its own and report bad rows while the good ones land."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list[Any]:
        if not isinstance(value, list):
            raise self.make_error("invalid")
        return value
