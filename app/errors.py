"""One root for domain errors, and the HTML/JSON error handlers.

Services raise `DomainError` subclasses; the API turns them into the SPEC §11 shape
`{"error": {"code", "message", "details"}}` and the web UI into a flash or an error
page, so a rule is stated once, where it lives.
"""
from typing import Any


class DomainError(Exception):
    code = "domain_error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}


class NotFound(DomainError):
    code = "not_found"
    status = 404


class Forbidden(DomainError):
    code = "forbidden"
    status = 403


class Conflict(DomainError):
    code = "conflict"
    status = 409


class ValidationFailed(DomainError):
    code = "validation_error"
    status = 422


class Refusals:
    """Every problem of one input, so a form lists them all at once instead of one per
    submit. Raised as one ValidationFailed: the first problem's code, message and
    details, with `details["errors"]` listing them all ({"field", "message"}) when
    there are several."""

    def __init__(self, code: str = "validation_error"):
        self.code = code
        self.found: list[dict] = []
        self._first: ValidationFailed | None = None

    def add(self, field: str, message: str) -> None:
        self.found.append({"field": field, "message": message})

    def note(self, exc: "ValidationFailed") -> None:
        """A refusal, with its own code and details (kept if it is the first)."""
        if not self.found:
            self._first = exc
        self.found.extend(problems(exc))

    def check(self, check, *args, **kwargs):
        """`check(*args, **kwargs)`, or None with the problems it raised noted."""
        try:
            return check(*args, **kwargs)
        except ValidationFailed as exc:
            self.note(exc)
            return None

    def found_for(self, field: str) -> bool:
        return any(problem["field"] == field for problem in self.found)

    def raise_any(self) -> None:
        if not self.found:
            return
        first = self._first
        if first is None:
            first = ValidationFailed(self.found[0]["message"], code=self.code,
                                     details={"field": self.found[0]["field"]})
        more = {"errors": self.found} if len(self.found) > 1 else {}
        raise ValidationFailed(first.message, code=first.code, details={**first.details, **more})


def problems(exc: DomainError) -> list[dict]:
    """The ({"field", "message"}) problems an error carries: all of a Refusals', else one."""
    return exc.details.get("errors") or [
        {"field": exc.details.get("field", ""), "message": exc.message}]


class InsufficientFunds(DomainError):
    code = "insufficient_funds"
    status = 409


HTTP_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
}


ERROR_TEMPLATES = {code: f"errors/{code}.html" for code in (403, 404, 413, 429)}


def wants_json() -> bool:
    from flask import request

    return request.path.startswith("/api/") or request.path.startswith("/stripe/")


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _field_problems(messages: dict, path: tuple = ()):
    """(dotted field name or None for the body as a whole, its first message) from
    webargs' {location: {field: [...]}}."""
    for name, value in messages.items():
        inner = path if not path and name in _LOCATIONS else (*path, str(name))
        if isinstance(value, dict):
            yield from _field_problems(value, inner)
        else:
            text = value[0] if isinstance(value, list) and value else value
            fields = [part for part in inner if part != "_schema"]
            yield (".".join(fields) or None), str(text)


def _named(messages):
    """Field messages keyed by text: a form field whose name is only blanks reaches us
    keyed by None, which JSON cannot sort among names."""
    if not isinstance(messages, dict):
        return messages
    return {"" if key is None else str(key): _named(value) for key, value in messages.items()}


_LOCATIONS = {"json", "query", "form", "files", "headers", "cookies", "path", "view_args"}


def http_error_response(error):
    from flask import jsonify, make_response, render_template

    status = error.code or 500
    if wants_json():
        details: dict[str, Any] = {}
        # webargs puts field-level messages on the exception (flask-smorest).
        messages = getattr(error, "data", {}).get("messages") if hasattr(error, "data") else None
        code = HTTP_ERROR_CODES.get(status, "error")
        message = error.description or error.name
        if messages:
            problems = list(_field_problems(messages))
            details = {"fields": _named(messages), "field": problems[0][0]}
            message = "; ".join(f"{name}: {text}" if name else text for name, text in problems)
        if status == 413:
            from flask import request

            limit = request.max_content_length
            message = (f"The request is larger than the {limit / 2**20:g} MiB this address "
                       "takes." if limit else message)
        response = jsonify(error_body(code, message, details))
        _keep_protocol_headers(error, response)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return response, status
    template = ERROR_TEMPLATES.get(status, "errors/generic.html")
    response = make_response(render_template(template, error=error, status=status), status)
    _keep_protocol_headers(error, response)
    return response


def _keep_protocol_headers(error, response) -> None:
    """The headers an HTTP error carries besides its body (405's Allow, 429's
    Retry-After, 416's Content-Range)."""
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value


def register_error_handlers(app) -> None:
    from flask import jsonify, render_template
    from werkzeug.exceptions import HTTPException

    @app.errorhandler(DomainError)
    def handle_domain_error(error: DomainError):
        if wants_json():
            return jsonify(error_body(error.code, error.message, error.details)), error.status
        template = ERROR_TEMPLATES.get(error.status, "errors/generic.html")
        return render_template(template, error=error, status=error.status), error.status

    @app.errorhandler(HTTPException)
    def handle_http_exception(error):
        return http_error_response(error)

    @app.errorhandler(500)
    def handle_internal_error(error):
        from app.extensions import db

        db.session.rollback()
        if wants_json():
            return jsonify(error_body("internal_error", "Something went wrong on our side.")), 500
        return render_template("errors/500.html", status=500), 500
