"""JSON request bodies with a bounded nesting depth.

Python's json module parses nested arrays and objects recursively: a body of a few
thousand ``[`` raises RecursionError (a 500) in the parser, or later in whatever
walks the result.  No request of this API needs more than a handful of levels, so
anything deeper than ``MAX_JSON_DEPTH`` is refused as a 400 before it is parsed.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import get_encoding  # type: ignore[attr-defined]  # not in stubs
from rest_framework.utils import json

MAX_JSON_DEPTH = 64

# A JSON string (brackets inside one do not nest anything).  The two alternatives
# cannot both match a character, so the match is linear in the body's length.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def json_too_deep(text: str, *, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text nests arrays and objects deeper than ``limit``.

    One pass over the brackets outside strings; no recursion, so it is safe on any
    input (invalid JSON included: the parser then refuses it on its own)."""
    if text.count("[") + text.count("{") <= limit:
        return False  # the usual case: cannot be that deep, nothing to scan
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def json_loads_bounded(text: str | bytes, *, limit: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for untrusted text outside DRF's parsers: ValueError (not
    RecursionError) when the text is not JSON or nests deeper than ``limit``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if json_too_deep(text, limit=limit):
        raise ValueError(f"JSON nested deeper than {limit} levels")
    return json.loads(text)


class BoundedJSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing bodies nested deeper than ``MAX_JSON_DEPTH`` (400)."""

    def parse(
        self,
        stream: IO[Any] | None,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        encoding = get_encoding(parser_context or {})
        try:
            raw = stream.read() if stream is not None else b""
            text = codecs.decode(raw, encoding)
        except (ValueError, LookupError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        if json_too_deep(text):
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.")
        try:
            parse_constant = json.strict_constant if self.strict else None
            return json.loads(text, parse_constant=parse_constant)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
