"""JSON bodies of the real-time routes (`POST /leads`, `/pings`, `/posts`) loaded without
webargs and marshmallow when they are plainly valid (neither an operation nor a job:
it only reads the request).

`json_arguments(blp, schema)` is `blp.arguments(schema)` -- the same OpenAPI document,
the same parse, the same errors -- with a path in front of it for the bodies real
sellers send: a JSON object (read by webargs' own `parse_json`) of the schema's fields
only, each a value its field takes as it is (a string for a `String`, a whole number
in range for an `Int`, `true`/`false` for a `Boolean`, anything but null for a `Raw`;
other fields through their own `deserialize`), the required ones present. The view
then gets exactly the dict the schema's `load` would have returned (the same fields,
in the schema's order, with their `load_default`s). Anything else -- no JSON content
type, a body that is not JSON or not an object, an unknown field, a null, a value of
another type, out of range, a missing required field -- goes through
webargs+marshmallow, which give their verdict and error body as before. Loading
through webargs was about a tenth of a real-time lead's request CPU
(docs/scaling.md); tests/test_api_fast_json.py checks the two agree.
"""
from functools import wraps
from typing import Any, Callable, Optional

from flask import request
from marshmallow import Schema, fields, missing, validate
from marshmallow.exceptions import ValidationError
from webargs.core import is_json, parse_json

from app.api.schemas import Int

_NOT_TAKEN = object()


def json_arguments(blp, schema: Schema):
    """`@blp.arguments(schema)` (JSON), with the fast path above in front of it."""

    def decorator(view):
        parsed = blp.arguments(schema)(view)
        loader = FastLoader(schema)

        @wraps(parsed)
        def load(*args, **kwargs):
            payload = loader.load(request.mimetype, request.get_data(cache=True))
            if payload is None:
                return parsed(*args, **kwargs)
            return view(*args, payload, **kwargs)

        return load

    return decorator


class FastLoader:
    """The schema's load of a plainly valid JSON body, or None (let marshmallow judge)."""

    def __init__(self, schema: Schema):
        if any(schema._hooks.values()) or schema.unknown != "raise":
            raise ValueError(f"{type(schema).__name__}: hooks or unknown={schema.unknown}")
        self.fields = [(field.data_key or name, name, field, _taker(field))
                       for name, field in schema.load_fields.items()]
        self.known = {key for key, *_ in self.fields}

    def load(self, mimetype: str, body: bytes) -> Optional[dict]:
        if not is_json(mimetype):
            return None
        try:
            data = parse_json(body)
        except Exception:  # noqa: BLE001 (webargs answers it)
            return None
        if type(data) is not dict or not self.known.issuperset(data):
            return None
        loaded = {}
        for key, name, field, take in self.fields:
            if key in data:
                value = data[key]
                if value is None:
                    if not field.allow_none:
                        return None
                else:
                    value = take(value, name, data)
                    if value is _NOT_TAKEN:
                        return None
                loaded[name] = value
            elif field.required:
                return None
            elif field.load_default is not missing:
                default = field.load_default
                loaded[name] = default() if callable(default) else default
        return loaded


def _taker(field: fields.Field) -> Callable[[Any, str, dict], Any]:
    """How a non-null value of this field is taken: as it is, or _NOT_TAKEN."""
    kind = type(field)
    if kind is fields.String and not field.validators:
        return lambda value, name, data: value if type(value) is str else _NOT_TAKEN
    if kind is fields.Raw and not field.validators:
        return lambda value, name, data: value
    if kind is fields.Boolean and not field.validators:
        return lambda value, name, data: value if type(value) is bool else _NOT_TAKEN
    if kind is Int and [type(v) for v in field.validators] == [validate.Range]:
        bounds = field.validators[0]
        if (bounds.min is not None and bounds.max is not None
                and bounds.min_inclusive and bounds.max_inclusive):
            low, high = bounds.min, bounds.max
            return lambda value, name, data: (value if type(value) is int and low <= value <= high
                                              else _NOT_TAKEN)

    def deserialized(value, name, data):
        try:
            return field.deserialize(value, name, data)
        except ValidationError:
            return _NOT_TAKEN

    return deserialized
