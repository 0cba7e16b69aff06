"""Pure logic: a sale rendered in the buyer's own format (SPEC §12), and the buyer's
reply read into accepted / rejected by their reply rule. No database, no network.

A field mapping is text, one field per line, `target = source`, where source is
one of our fields (`email`), a constant (`"LeadX"`), or a transform of one of our
fields (`digits(phone)`, `date(consent_at, "%d/%m/%Y")`). A dotted target
(`properties.email`) nests: an object in JSON, an element in XML (all under `<lead>`),
and a plain name in a form."""
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Optional
from urllib.parse import urlencode
from xml.etree import ElementTree

from defusedxml import ElementTree as SafeElementTree

FORMATS = {"json": "application/json", "form": "application/x-www-form-urlencoded",
           "xml": "application/xml"}
RULES = ("status", "json", "xpath", "regex")

# Our fields a mapping may name: the lead as the webhook carries it, the sale's own
# fields, and the whole name.
FIELDS = ("sale_id", "order_id", "price", "currency", "sold_at", "lead_id", "first_name",
          "last_name", "full_name", "email", "phone", "age", "gender", "region", "country",
          "city", "postal_code", "marital_status", "employed", "interests", "budget",
          "authority", "need", "timeframe", "consent_at", "source_url", "consent_text", "ip",
          "trustedform_cert_url", "jornaya_leadid", "sub_id", "score", "temperature",
          # SPEC §14: the person's clock, and what lets them opt out by phone.
          "timezone", "local_time", "opt_out_code", "opt_out_url", "do_not_call")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    return str(value)


def _date(value: Any, pattern: str) -> str:
    if not value:
        return ""
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).strftime(pattern)


TRANSFORMS: dict[str, Callable[..., Any]] = {
    "first": lambda v: _text(v).split(" ", 1)[0],  # first name of a full name
    "last": lambda v: _text(v).split(" ", 1)[1] if " " in _text(v) else "",
    "digits": lambda v: re.sub(r"\D", "", _text(v)),  # phone digits only
    "no_plus": lambda v: _text(v).removeprefix("+"),
    "upper": lambda v: _text(v).upper(),
    "lower": lambda v: _text(v).lower(),
    "date": _date,  # date(field, "strftime pattern")
}

_LINE = re.compile(r"^\s*([A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*)\s*=\s*(.+?)\s*$")
_CONSTANT = re.compile(r'^"(.*)"$')
_CALL = re.compile(r'^(\w+)\(\s*(\w+)\s*(?:,\s*"(.*)"\s*)?\)$')


class TemplateError(ValueError):
    """A mapping or rule the buyer wrote cannot be used; the message says where."""


@dataclass(frozen=True)
class Field:
    target: str
    source: Optional[str] = None  # one of FIELDS; None for a constant
    constant: Optional[str] = None
    transform: Optional[str] = None
    argument: Optional[str] = None

    def value(self, record: dict) -> Any:
        if self.source is None:
            return self.constant
        value = record.get(self.source)
        if self.transform is None:
            return value
        function = TRANSFORMS[self.transform]
        return function(value, self.argument) if self.transform == "date" else function(value)


def parse_mapping(text: str) -> list[Field]:
    """The mapping's fields, in order; TemplateError naming the first bad line."""
    fields, groups, targets = [], set(), set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise TemplateError(f"Line {number}: write it as  target = source.")
        target, source = match.groups()
        parts = target.split(".")
        parents = {".".join(parts[:i]) for i in range(1, len(parts))}
        if target in targets or target in groups or parents & targets:
            raise TemplateError(f"Line {number}: {target} is given twice, or both as a field "
                                "and as a group of fields.")
        targets.add(target)
        groups |= parents
        if constant := _CONSTANT.match(source):
            fields.append(Field(target, constant=constant.group(1)))
            continue
        call = _CALL.match(source)
        name, transform, argument = (call.group(2), call.group(1), call.group(3)) if call \
            else (source, None, None)
        if name not in FIELDS:
            raise TemplateError(f"Line {number}: {name} is not one of our fields.")
        if transform is not None and transform not in TRANSFORMS:
            raise TemplateError(f"Line {number}: {transform} is not a transform; use one of "
                                f"{', '.join(TRANSFORMS)}.")
        if (transform == "date") != (argument is not None):
            raise TemplateError(f"Line {number}: only date(field, \"pattern\") takes a pattern.")
        fields.append(Field(target, name, transform=transform, argument=argument))
    if not fields:
        raise TemplateError("The mapping has no fields.")
    return fields


def record_of(sale: dict) -> dict:
    """The flat record a mapping reads, from a sale as the webhook carries it."""
    lead = sale["lead"]
    names = [lead.get("first_name"), lead.get("last_name")]
    return {**{k: v for k, v in lead.items() if k != "id"}, "lead_id": lead["id"],
            "full_name": " ".join(n for n in names if n) or None,
            **{k: sale[k] for k in ("sale_id", "order_id", "price", "currency", "sold_at")}}


def render(body_format: str, fields: list[Field], record: dict) -> tuple[str, bytes]:
    """The content type and body of the request for this record."""
    pairs = [(f.target, f.value(record)) for f in fields]
    if body_format == "json":
        document: dict = {}
        for target, value in pairs:
            *parents, leaf = target.split(".")
            node = document
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = value
        body = json.dumps(document, ensure_ascii=False).encode()
    elif body_format == "form":
        body = urlencode([(target, _text(value)) for target, value in pairs]).encode()
    elif body_format == "xml":
        root = ElementTree.Element("lead")
        for target, value in pairs:
            *parents, leaf = target.split(".")
            node = root
            for parent in parents:
                found = node.find(parent)
                node = ElementTree.SubElement(node, parent) if found is None else found
            ElementTree.SubElement(node, leaf).text = _text(value)
        body = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    else:
        raise TemplateError(f"{body_format} is not a body format.")
    return FORMATS[body_format], body


@dataclass(frozen=True)
class ReplyRule:
    """How the buyer's reply reads: any 2xx (status); or, also, the value at `path` (a
    JSON path, an XPath, or a regular expression's first group or match) equal to
    `accept`, or without `accept` anything there at all; `reason` (same language)
    gives the buyer's reason."""
    kind: str = "status"
    path: str = ""
    accept: str = ""
    reason: str = ""

    def check(self) -> "ReplyRule":
        """The rule itself, or TemplateError if it cannot be read."""
        if self.kind not in RULES:
            raise TemplateError(f"{self.kind} is not a reply rule.")
        if self.kind != "status" and not self.path.strip():
            raise TemplateError("The reply rule needs a path or pattern.")
        for expression in (self.path, self.reason):
            if not expression:
                continue
            try:
                if self.kind == "json":
                    import jsonpath  # see _select

                    jsonpath.compile(expression)
                elif self.kind == "xpath":
                    import elementpath  # see _select

                    elementpath.XPath2Parser().parse(expression)
                elif self.kind == "regex":
                    re.compile(expression)
            except Exception as exc:  # each library has its own syntax error classes
                raise TemplateError(f"{expression} cannot be read: {exc}") from None
        return self


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: Optional[str]  # the buyer's own words, or ours when they gave none


def _first(values) -> Optional[str]:
    for value in values if isinstance(values, list) else [values]:
        text = getattr(value, "text", value)  # an XPath may select an element
        if text is not None:
            return _text(text).strip()
    return None


def _select(kind: str, expression: str, text: str) -> Optional[str]:
    """The first value the expression selects in the reply, None if none (or if the
    reply is not the JSON or XML the rule expects)."""
    if kind == "json":
        import jsonpath  # as elementpath below: only for the buyers whose rule reads JSON

        try:
            return _first(jsonpath.findall(expression, json.loads(text)))
        except ValueError:
            return None
    if kind == "xpath":
        # Imported on first use: 6 MB that every process importing the app (web, jobs,
        # uploads) would otherwise carry for the few buyers whose replies are XML.
        import elementpath

        try:
            return _first(elementpath.select(SafeElementTree.fromstring(text), expression))
        except (ElementTree.ParseError, ValueError):
            return None
    match = re.search(expression, text)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def read_reply(rule: ReplyRule, status: int, body: bytes, host: str) -> Verdict:
    text = body.decode("utf-8", "replace")
    reason = _select(rule.kind, rule.reason, text) if rule.reason and rule.kind != "status" \
        else None
    if not 200 <= status < 300:
        said = reason or text.strip()[:200]
        return Verdict(False, f"{host} answered HTTP {status}" + (f": {said}" if said else ""))
    if rule.kind == "status":
        return Verdict(True, None)
    value = _select(rule.kind, rule.path, text)
    if not rule.accept:  # the path selecting anything (the pattern matching) is enough
        accepted = value is not None
        ours = f"{host}'s reply has nothing at {rule.path}"
    else:
        accepted = value is not None and value.casefold() == rule.accept.strip().casefold()
        found = "nothing" if value is None else f'"{value}"'
        ours = f'{host} answered {found} where {rule.path} should be "{rule.accept}"'
    return Verdict(True, reason) if accepted else Verdict(False, reason or ours)


# Starting points with the field names of widely used CRMs' lead intake.
PRESETS = {
    "salesforce": {
        "label": "Salesforce Web-to-Lead", "body_format": "form", "reply_kind": "status",
        "mapping": 'oid = "YOUR-ORG-ID"\nfirst_name = first_name\nlast_name = last_name\n'
                   'email = email\nphone = phone\ncity = city\nzip = postal_code\n'
                   'state = region\ncountry = country\nlead_source = "LeadX"',
    },
    "hubspot": {
        "label": "HubSpot contacts API", "body_format": "json", "reply_kind": "json",
        "reply_path": "$.id", "reply_reason": "$.message",
        "mapping": "properties.firstname = first_name\nproperties.lastname = last_name\n"
                   "properties.email = email\nproperties.phone = phone\n"
                   "properties.city = city\nproperties.zip = postal_code\n"
                   "properties.country = country",
        "headers": "Authorization: Bearer YOUR-PRIVATE-APP-TOKEN",
    },
}
