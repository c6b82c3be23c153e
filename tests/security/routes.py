"""Every URL pattern of the project, and paths made from them with real objects.

The walk reads Django's resolver (includes, the admin's and DICOMweb's patterns, the
router's format suffixes), so a route added tomorrow is walked tomorrow.  A pattern's
parameters are filled by name through a ``pick`` function; a pattern whose
parameters cannot be filled, or whose filled path does not resolve back to the same
view, is reported as unfillable (the tests fail on it rather than skip it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.urls import Resolver404, URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RegexPattern, RoutePattern


@dataclass(frozen=True)
class Route:
    """One URL pattern with the patterns of the includes above it."""

    parts: tuple[Any, ...]  # RoutePattern / RegexPattern, outermost first
    name: str  # namespaced ("admin:network_facility_change"), or "" when unnamed
    callback: Any

    @property
    def template(self) -> str:
        return "".join(_text(p) for p in self.parts)

    @property
    def params(self) -> list[str]:
        names: list[str] = []
        for part in self.parts:
            text = _text(part)
            if isinstance(part, RoutePattern):
                names += [m.group("name") for m in _ROUTE_PARAM.finditer(text)]
            else:
                names += re.findall(r"\(\?P<(\w+)>", text)
        return names


def _text(pattern: Any) -> str:
    if isinstance(pattern, RoutePattern):
        return str(pattern._route)
    if isinstance(pattern, RegexPattern):
        return str(pattern._regex)
    return str(pattern)


_ROUTE_PARAM = re.compile(r"<(?:(?P<conv>[^>:]+):)?(?P<name>[^>]+)>")


def walk(
    patterns: list[Any] | None = None,
    parts: tuple[Any, ...] = (),
    namespace: str = "",
) -> Iterator[Route]:
    """Every view-bearing pattern of the URLconf, through every include."""
    if patterns is None:
        patterns = get_resolver().url_patterns
    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = namespace
            if entry.namespace:
                inner = f"{namespace}{entry.namespace}:"
            yield from walk(entry.url_patterns, (*parts, entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}{entry.name}" if entry.name else ""
            yield Route(parts=(*parts, entry.pattern), name=name, callback=entry.callback)


def _fill_regex(text: str, values: dict[str, str]) -> str:
    """A regex pattern with its named groups replaced by values, made literal."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("(?P<", i):
            end_name = text.index(">", i)
            name = text[i + 4 : end_name]
            depth, j = 1, end_name + 1
            while depth:
                if text[j] == "\\":
                    j += 2
                    continue
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            out.append(values[name])
            i = j
            continue
        out.append(text[i])
        i += 1
    literal = "".join(out)
    literal = literal.lstrip("^").rstrip("$")
    literal = literal.replace("/?", "/").replace("\\Z", "")
    return re.sub(r"\\(.)", r"\1", literal)


def _fill_route(text: str, values: dict[str, str]) -> str:
    return _ROUTE_PARAM.sub(lambda m: values[m.group("name")], text)


class Unfillable(Exception):
    """A route whose parameters the test cannot fill with real objects."""


def build_path(route: Route, pick: Callable[[Route, str], str | None]) -> str:
    """The route's path with every parameter filled by ``pick``; it must resolve back
    to the route's own view (else Unfillable)."""
    values: dict[str, str] = {}
    for name in route.params:
        value = pick(route, name)
        if value is None:
            raise Unfillable(f"{route.template}: no object for parameter '{name}'")
        values[name] = value
    path = "/"
    for part in route.parts:
        text = _text(part)
        if isinstance(part, RoutePattern):
            path += _fill_route(text, values)
        else:
            path += _fill_regex(text, values)
    # A path shadowed by an earlier pattern (e.g. the sign-in app's admin/login/)
    # serves that pattern's view, which the walk visits too.
    try:
        resolve(path)
    except Resolver404 as exc:
        raise Unfillable(f"{route.template}: filled as {path}, which does not resolve") from exc
    return path


def admin_model_label(route: Route) -> str | None:
    """The "app.model" of an admin page's model, from the admin's url names."""
    from django.contrib import admin

    if route.name.startswith("admin:"):
        short = route.name.split(":", 1)[1]
        for model in admin.site._registry:
            prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
            if short.startswith(prefix):
                return model._meta.label_lower
    # Unnamed admin pages (the object's bare url, which redirects to its change page).
    for model in admin.site._registry:
        prefix = f"admin/{model._meta.app_label}/{model._meta.model_name}/"
        if route.template.startswith(prefix):
            return model._meta.label_lower
    return None


def router_basename(route: Route) -> str | None:
    """The DRF router basename of an API route ("facility" of "facility-detail")."""
    short = route.name.rsplit(":", 1)[-1]
    for suffix in ("-detail", "-list"):
        if short.endswith(suffix):
            return short[: -len(suffix)]
    if "-" in short:
        return short
    return None


def body_of(response: Any) -> str:
    """A response's headers and body as text (streamed bodies read through)."""
    if getattr(response, "streaming", False):
        data = b"".join(
            chunk if isinstance(chunk, bytes) else str(chunk).encode()
            for chunk in response.streaming_content
        )
    else:
        data = response.content
    # Headers too: a download names its file (e.g. by accession number).
    headers = "\n".join(f"{name}: {value}" for name, value in response.items())
    return headers + "\n\n" + data.decode("utf-8", errors="replace")
