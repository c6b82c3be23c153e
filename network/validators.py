"""Validators for the reading network's identifiers."""

import ipaddress
import re
import zoneinfo
from functools import cache

from django.core.exceptions import ValidationError

JURISDICTION_RE = re.compile(r"^[A-Z]{2}-[A-Z0-9]{1,3}$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
# DICOM PS3.5 AE: 1-16 characters of the default repertoire, no backslash
# or control characters, not only spaces.
AE_TITLE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
# A reading group's aging step and longest self-pause, in minutes (the bounds of the
# group's check constraints): a step of one minute to one week, a pause up to a day.
AGING_MINUTES_MIN, AGING_MINUTES_MAX = 1, 10080
PAUSE_MINUTES_MIN, PAUSE_MINUTES_MAX = 1, 1440


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(value: str) -> None:
    if value not in _timezones():
        raise ValidationError(f"'{value}' is not a known IANA time zone.", code="timezone")


def validate_jurisdiction_code(value: str) -> None:
    if not JURISDICTION_RE.match(value):
        raise ValidationError(
            f"'{value}' is not an ISO 3166-2 subdivision code such as US-TX or GB-ENG.",
            code="jurisdiction",
        )


def validate_country_code(value: str) -> None:
    if not COUNTRY_RE.match(value):
        raise ValidationError(f"'{value}' is not an ISO 3166-1 alpha-2 code.", code="country")


def validate_ae_title(value: str) -> None:
    if not AE_TITLE_RE.match(value) or not value.strip() or value != value.strip():
        raise ValidationError(
            "An AE title is 1-16 printable characters, no backslash, "
            "no leading or trailing spaces.",
            code="ae_title",
        )


def validate_networks(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("A list of IP addresses or CIDR networks.", code="networks")
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise ValidationError(f"'{item}' is not an IP address or network.") from exc


def address_allowed(address: str, networks: list[str]) -> bool:
    """True when ``networks`` is empty or contains ``address``."""
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)
