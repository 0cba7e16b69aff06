"""URLs as templates build them, remembered: a page's navigation, its static files and
its rows' links are the same on every request, and werkzeug's builder costs a page
about a fifth of a bare route each time (220 calls on a buyer's order page).

A relative URL depends only on the endpoint, its values and the request's script root
(the app has no URL defaults, hosts or subdomains), so each is built once per app.
External URLs, and calls with any other `_` option, are built every time."""
from flask import current_app, has_request_context, request, url_for

MAX_REMEMBERED = 20_000  # per app; then it starts again


def _script_root() -> str:
    return request._get_current_object().script_root


def template_url_for(endpoint: str, **values) -> str:
    if not has_request_context() or endpoint[:1] == ".":
        return url_for(endpoint, **values)
    if values:
        if any(name[:1] == "_" for name in values):
            return url_for(endpoint, **values)
        # With each value's type: 1 and True are equal keys but different URLs. In the
        # order given: a template's call gives its values in the same order each time.
        key = (_script_root(), endpoint, *values.items(), *map(type, values.values()))
        try:
            hash(key)
        except TypeError:  # a list or dict among the values
            return url_for(endpoint, **values)
    else:
        key = (_script_root(), endpoint)
    # The objects behind the proxies: each attribute read through one costs more than
    # the lookup itself, and a page asks for dozens of URLs.
    built = current_app._get_current_object().extensions.setdefault("template_urls", {})
    url = built.get(key)
    if url is None:
        if len(built) >= MAX_REMEMBERED:
            built.clear()
        url = built[key] = url_for(endpoint, **values)
    return url
