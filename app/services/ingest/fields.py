"""The canonical lead fields of SPEC §3, their header synonyms and value vocabularies.

Headers and vocabulary words are compared by `text_key`: case-folded, accents and all
punctuation, spaces, underscores and hyphens removed, so `E-Mail Address`,
`email_address` and `emailaddress` are one key. Russian `й`/`ё` fold to `и`/`е` on
both sides, which is harmless for matching.
"""
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlsplit


from app.errors import ValidationFailed

FIELDS: tuple[str, ...] = (
    "first_name", "last_name", "email", "phone",
    "age", "birth_date", "gender", "region", "country",
    "marital_status", "employed", "interests",
    "budget", "authority", "need", "timeframe",
    "consent_at", "source_url", "consent_text", "consent", "ip",
    "sub_id", "city", "postal_code", "trustedform_cert_url", "jornaya_leadid",
)

# What no row is accepted without (validate.py): a file needs a column for each group,
# with the verdict every row gets when it has none.
REQUIRED: tuple[tuple[tuple[str, ...], str], ...] = (
    (("email", "phone"), "no_contact"),
    (("consent_at",), "no_consent"),
    (("source_url",), "no_consent"),
)


def missing_required(fields: Iterable[str | None]) -> list[tuple[tuple[str, ...], str]]:
    """The required groups (and their verdict) that none of these fields fills."""
    present = set(fields)
    return [(group, code) for group, code in REQUIRED if present.isdisjoint(group)]


# Field -> header names, strongest first: when two columns claim one field, the
# better-ranked synonym wins (a file with both `State` and `City` gives `State`).
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "first_name": (
        "first_name", "first name", "given name", "forename", "fname", "first",
        "имя", "nombre", "vorname", "prénom", "nome", "name", "full name", "фио",
        "nombre completo", "contact name",
    ),
    "last_name": (
        "last_name", "last name", "surname", "family name", "lname", "last",
        "фамилия", "apellido", "apellidos", "nachname", "nom",
    ),
    "email": (
        "email", "e-mail", "mail", "email address", "e-mail address", "почта",
        "электронная почта", "эл почта", "эл. почта", "емейл", "имейл", "e-mail адрес",
        "correo", "correo electrónico", "correo electronico", "courriel",
    ),
    "phone": (
        "phone", "phone number", "telephone", "tel", "mobile", "mobile phone",
        "mobile number", "cell", "cell phone", "cellphone", "phone1", "телефон",
        "номер телефона", "тел", "мобильный", "мобильный телефон", "моб", "teléfono",
        "número de teléfono", "móvil", "celular", "telefon", "handy", "whatsapp",
    ),
    "age": ("age", "возраст", "edad", "alter", "âge"),
    "birth_date": (
        "birth_date", "birthdate", "date of birth", "dob", "birthday", "born",
        "дата рождения", "день рождения", "fecha de nacimiento", "fecha nacimiento",
        "geburtsdatum",
    ),
    "gender": ("gender", "sex", "пол", "género", "sexo", "geschlecht"),
    "region": (
        "region", "state", "province", "oblast", "регион", "область",
        "субъект", "субъект рф", "provincia", "región", "comunidad autónoma",
        "comunidad", "estado", "bundesland",
    ),
    "country": ("country", "country code", "страна", "país", "land"),
    "marital_status": (
        "marital_status", "marital", "relationship status", "family status",
        "семейное положение", "estado civil", "familienstand",
    ),
    "employed": (
        "employed", "employment", "employment status", "job status", "занятость",
        "работает", "трудоустроен", "empleado", "empleo", "situación laboral",
    ),
    "interests": ("interests", "interest", "hobbies", "tags", "интересы", "intereses"),
    "budget": ("budget", "бюджет", "presupuesto"),
    "authority": ("authority", "decision maker", "лпр", "полномочия", "autoridad"),
    "need": ("need", "needs", "потребность", "necesidad"),
    "timeframe": ("timeframe", "timeline", "срок", "сроки", "plazo"),
    "consent_at": (
        "consent_at", "consent date", "consent time", "consented at", "consent timestamp",
        "opt-in time", "opt-in date", "opt-in at", "subscribed at", "signup date",
        "sign-up date", "дата согласия", "время согласия", "дата подписки", "дата заявки",
        "fecha de consentimiento", "fecha consentimiento", "fecha de alta", "timestamp",
        "date", "fecha", "дата",
    ),
    "source_url": (
        "source_url", "source url", "page url", "form url", "landing page", "url",
        "page", "source", "landing", "website", "site", "источник", "страница",
        "ссылка", "сайт", "url страницы", "fuente", "página", "url de origen",
        "url formulario", "url del formulario", "página del formulario", "url de la página",
    ),
    # A column named for consent ("consent", "согласие", "consent text"...) may hold the
    # text shown or whether the person agreed: `_by_values` decides from its cells.
    "consent_text": (
        "consent_text", "consent text", "consent wording", "consent language",
        "opt-in text", "текст согласия", "texto de consentimiento", "texto del consentimiento",
        "einwilligungstext", "texte de consentement", "testo del consenso",
        "texto do consentimento", "текст згоди",
    ),
    "consent": (
        "consent", "согласие", "consentimiento", "einwilligung", "consentement", "consenso",
        "consentimento", "згода", "consent_flag", "consent flag", "consent given", "consented", "has consent",
        "consent yes/no", "consent (yes/no)", "agreed", "agrees", "agreement", "opt-in",
        "opt in", "opted in", "gdpr consent", "tcpa consent", "marketing consent",
        "согласие получено", "согласие дано", "дал согласие", "согласен",
        "согласие на обработку", "согласие на обработку данных", "согласие (да/нет)",
        "acepta", "aceptado", "acepto", "consentimiento otorgado", "consentimiento dado",
        "einwilligung erteilt", "einverstanden", "zustimmung", "consentement donné",
        "accord", "consenso dato", "consenso prestato", "consentimento dado", "aceito",
        "згода надана", "згоден",
    ),
    "ip": ("ip", "ip address", "user ip", "ip адрес", "dirección ip"),
    "sub_id": (
        "sub_id", "subid", "sub id 1", "sub1", "aff_sub", "source id", "campaign",
        "campaign id", "campaign name", "utm_campaign", "placement", "affiliate id",
        "publisher id", "utm_source", "кампания", "канал", "подисточник", "метка",
        "utm-метка", "campaña", "kampagne",
    ),
    # A file's city is also its region when it has no region column (validate.py).
    "city": (
        "city", "town", "locality", "город", "населенный пункт", "ciudad", "localidad",
        "municipio", "stadt", "ort", "ville", "città", "cidade", "місто",
    ),
    "postal_code": (
        "postal_code", "postal code", "postcode", "post code", "zip", "zip code", "zipcode",
        "почтовый индекс", "индекс", "código postal", "codigo postal", "cp", "postleitzahl",
        "plz", "code postal", "cap", "cep", "поштовий індекс",
    ),
    "trustedform_cert_url": (
        "trustedform_cert_url", "xxtrustedformcerturl", "trustedform", "trusted form",
        "trustedform cert", "trustedform certificate", "trustedform url",
        "trustedform cert url",
    ),
    "jornaya_leadid": (
        "jornaya_leadid", "jornaya", "jornaya leadid", "jornaya lead id", "leadid token",
        "leadid_token", "universal leadid", "universal_leadid",
    ),
}


@lru_cache(maxsize=4096)
def text_key(text: str) -> str:
    """Comparison key: case-folded letters and digits only, accents removed."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if ch.isalnum())


def _build_synonyms() -> dict[str, tuple[str, int]]:
    table: dict[str, tuple[str, int]] = {}
    for name, synonyms in _SYNONYMS.items():
        for rank, synonym in enumerate(synonyms):
            key = text_key(synonym)
            if table.get(key, (name,))[0] != name:
                raise AssertionError(f"Header {synonym!r} is claimed by two fields")
            table.setdefault(key, (name, rank))
    return table


SYNONYMS: dict[str, tuple[str, int]] = _build_synonyms()  # header key -> (field, rank)


# The rejections file (reports.py) starts with these columns: uploaded again once its
# rows are fixed, they are ours, not the lead's, and are ignored without asking.
REJECTION_COLUMNS = ("row", "code", "message")
_REJECTION_KEYS = (("row",), ("code", "codes"), ("message",))


def _rejection_columns(headers: Sequence[str]) -> int:
    """How many of the first columns are the rejections file's own (3 or 0)."""
    keys = [text_key(header) for header in headers[:len(_REJECTION_KEYS)]]
    if len(keys) == len(_REJECTION_KEYS) and all(
            key in accepted for key, accepted in zip(keys, _REJECTION_KEYS)):
        return len(keys)
    return 0


class HeaderMappingError(ValidationFailed):
    code = "invalid_mapping"


@dataclass(frozen=True)
class HeaderMap:
    """Which field each column feeds (None: ignored), and the headers we do not know."""

    headers: tuple[str, ...]
    fields: tuple[str | None, ...]
    unknown: tuple[str, ...]
    _pairs: tuple[tuple[int, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pairs = tuple((i, name) for i, name in enumerate(self.fields) if name)
        object.__setattr__(self, "_pairs", pairs)

    @property
    def known(self) -> frozenset[str]:
        return frozenset(name for _, name in self._pairs)

    @property
    def missing(self) -> list[tuple[tuple[str, ...], str]]:
        return missing_required(self.fields)

    def pick(self, row: Sequence[str]) -> dict[str, str]:
        """The row's values by field; short rows are padded, extra columns dropped."""
        if len(row) < len(self.fields):
            row = list(row) + [""] * (len(self.fields) - len(row))
        return {name: row[i] for i, name in self._pairs}


def _user_fields(user_mapping: Mapping[str, str] | None) -> dict[str, str | None]:
    """User mapping by header key; values checked against FIELDS ("" = ignore)."""
    mapped: dict[str, str | None] = {}
    for header, target in (user_mapping or {}).items():
        target = (target or "").strip().lower()
        if target and target not in FIELDS:
            raise HeaderMappingError(
                f"The mapping sends the column “{header}” to “{target}”, which is not a "
                f"field we know; use one of {', '.join(FIELDS)} or leave it empty to ignore "
                "the column.",
                code="unknown_field",
                details={"header": header, "field": target, "fields": list(FIELDS)},
            )
        mapped[text_key(str(header))] = target or None
    return mapped


_CONSENT_FIELDS = ("consent", "consent_text")


def _cells(column: int, sample: Sequence[Sequence[str]]) -> list[str]:
    return [cell for row in sample if column < len(row) and (cell := row[column].strip())]


def _by_values(name: str, column: int, sample: Sequence[Sequence[str]]) -> str:
    """A consent column recognised by its header is a yes/no flag when its sampled
    cells are all yes/no words, and the consent text when one of them is a sentence."""
    cells = _cells(column, sample)
    if cells and all(consent_flag(cell) is not None for cell in cells):
        return "consent"
    if any(consent_flag(cell) is None and len(cell.split()) >= 4 for cell in cells):
        return "consent_text"
    return name


def _page_or_source(column: int, sample: Sequence[Sequence[str]]) -> str:
    """A column named like the consent page ("source", "page") holds the page when its
    sampled cells are web addresses, and the seller's own source (sub_id) when none is:
    `vk_ads` and `spring-campaign` say where a lead came from, not which page it was."""
    cells = _cells(column, sample)
    if cells and not any(normalise_url(cell) for cell in cells):
        return "sub_id"
    return "source_url"


def _all_pages(column: int, sample: Sequence[Sequence[str]]) -> bool:
    cells = _cells(column, sample)
    return bool(cells) and all(normalise_url(cell) for cell in cells)


# A claim moved to another field by its cells ranks after every header that names it.
_MOVED_RANK = 1000


def map_headers(
    headers: Sequence[str], user_mapping: Mapping[str, str] | None = None,
    sample: Sequence[Sequence[str]] = (),
) -> HeaderMap:
    """Map a CSV header row to fields; the user's mapping beats the synonym table.

    `sample` is a few data rows: they tell a consent flag from consent text, a consent
    page from the seller's own source, and name the page column when no header does
    (the only unknown column whose cells are all web addresses).
    """
    user = _user_fields(user_mapping)
    fields: list[str | None] = [None] * len(headers)
    unknown: list[int] = []
    claims: dict[str, list[tuple[int, int]]] = {}  # field -> [(rank, column)]
    ours = _rejection_columns(headers)
    for column, header in enumerate(headers):
        key = text_key(header)
        if key in user:
            if user[key]:
                claims.setdefault(user[key], []).append((-1, column))  # user beats synonyms
        elif column < ours:
            continue
        elif key in SYNONYMS:
            name, rank = SYNONYMS[key]
            if name in _CONSENT_FIELDS:
                name = _by_values(name, column, sample)
            elif name == "source_url" and _page_or_source(column, sample) == "sub_id":
                name, rank = "sub_id", _MOVED_RANK + rank
            claims.setdefault(name, []).append((rank, column))
        elif key:
            unknown.append(column)
    # Only beside columns named by their headers, and under a header that is no web
    # address itself: a first row of data is no header (the file is refused as such).
    pages = [column for column in unknown
             if _all_pages(column, sample) and not normalise_url(headers[column])]
    if claims and "source_url" not in claims and len(pages) == 1:
        claims["source_url"] = [(_MOVED_RANK, pages[0])]
        unknown.remove(pages[0])
    for name, found in claims.items():
        found.sort()
        if len(found) > 1 and found[0][0] == found[1][0]:
            first, second = (headers[found[0][1]], headers[found[1][1]])
            raise HeaderMappingError(
                f"Two columns, “{first}” (column {found[0][1] + 1}) and “{second}” "
                f"(column {found[1][1] + 1}), both map to {name}; map one of them to "
                "another field or to nothing.",
                code="duplicate_field",
                details={"field": name, "headers": [first, second]},
            )
        fields[found[0][1]] = name
        # Outranked columns are left for the seller to map, like unknown headers.
        unknown.extend(column for _, column in found[1:])
    return HeaderMap(tuple(headers), tuple(fields), tuple(headers[c] for c in sorted(unknown)))


# Value vocabularies, by text_key. Anything else is "unknown": these are optional
# demographics, and a word we do not know is not a reason to reject a lead.
def _vocabulary(groups: Mapping[str, Sequence[str]]) -> dict[str, str]:
    return {text_key(word): value for value, words in groups.items() for word in words}


GENDERS = _vocabulary({
    "f": ("f", "female", "woman", "w", "girl", "ж", "жен", "женский", "женщина", "mujer",
          "femenino", "femenina", "fem", "frau", "weiblich", "femme"),
    "m": ("m", "male", "man", "boy", "м", "муж", "мужской", "мужчина", "hombre", "masculino",
          "varón", "mann", "männlich", "homme", "h"),
    "other": ("other", "x", "non-binary", "nonbinary", "diverse", "другое", "иное", "otro",
              "divers", "autre"),
    "unknown": ("unknown", "u", "n/a", "na", "prefer not to say", "не указан", "неизвестно",
                "desconocido"),
})

MARITAL_STATUSES = _vocabulary({
    "single": ("single", "not married", "unmarried", "never married", "холост", "холостой",
               "не женат", "не замужем", "свободен", "свободна", "soltero", "soltera", "ledig"),
    "partnered": ("partnered", "partner", "in a relationship", "relationship", "cohabiting",
                  "common-law", "domestic partnership", "engaged", "в отношениях",
                  "гражданский брак", "pareja", "en pareja", "unión libre", "pareja de hecho"),
    "married": ("married", "женат", "замужем", "в браке", "женат/замужем", "casado", "casada",
                "verheiratet", "marié", "mariée"),
    "divorced": ("divorced", "separated", "разведен", "разведена", "в разводе", "divorciado",
                 "divorciada", "separado", "separada", "geschieden"),
    "widowed": ("widowed", "widow", "widower", "вдова", "вдовец", "вдовствует", "viudo", "viuda",
                "verwitwet"),
    "unknown": ("unknown", "n/a", "не указано", "desconocido"),
})

EMPLOYED = _vocabulary({
    "yes": ("yes", "y", "true", "1", "employed", "working", "full-time", "full time",
            "part-time", "part time", "self-employed", "да", "работает", "работаю",
            "трудоустроен", "трудоустроена", "sí", "empleado", "empleada", "trabaja", "ja"),
    "no": ("no", "n", "false", "0", "unemployed", "not employed", "not working", "нет",
           "не работает", "не работаю", "безработный", "безработная", "desempleado",
           "desempleada", "parado", "parada", "nein"),
    "unknown": ("unknown", "n/a", "не указано", "desconocido"),
})


# Whether the person agreed, as consent columns write it (SPEC §3), in the languages
# of the header synonyms. Checked symbols have no text_key, so they are their own keys.
CONSENT_VALUES = {
    **_vocabulary({
        "yes": ("yes", "y", "true", "t", "1", "on", "ok", "okay", "checked", "agreed", "agree",
                "accepted", "accept", "given", "granted", "consented", "opt-in", "opted in",
                "да", "д", "согласен", "согласна", "согласие получено", "получено", "есть",
                "sí", "si", "s", "acepto", "acepta", "aceptado", "aceptada", "otorgado",
                "verdadero", "ja", "j", "wahr", "einverstanden", "oui", "o", "vrai", "accepté",
                "sì", "vero", "sim", "aceito", "verdadeiro", "так", "т", "згоден", "згодна"),
        "no": ("no", "n", "false", "f", "0", "off", "unchecked", "declined", "refused",
               "rejected", "denied", "withdrawn", "not given", "opt-out", "opted out",
               "нет", "н", "не согласен", "не согласна", "отказ", "отказался", "отказалась",
               "нет согласия", "rechazado", "rechazada", "falso", "nein", "falsch", "non",
               "faux", "refusé", "não", "nao", "ні", "не згоден", "не згодна"),
    }),
    "✓": "yes", "✔": "yes", "☑": "yes", "✅": "yes", "+": "yes", "x": "yes",
    "✗": "no", "✘": "no", "☐": "no", "❌": "no", "-": "no", "—": "no",
}


@lru_cache(maxsize=256)
def consent_flag(raw: str) -> bool | None:
    """True for a yes, False for a no, None for anything else (an empty cell too)."""
    value = raw.strip().casefold()
    found = CONSENT_VALUES.get(value) or CONSENT_VALUES.get(text_key(value))
    return None if found is None else found == "yes"


_BARE_URL = re.compile(r"[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}(?:[/?#:]\S*)?", re.I)


@lru_cache(maxsize=4096)
def normalise_url(raw: str) -> str | None:
    """An http(s) URL with a real host; a bare `site.com/form` gets https://."""
    value = raw.strip()
    if "://" not in value:
        if not _BARE_URL.fullmatch(value):
            return None
        value = "https://" + value
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    if any(c.isspace() for c in value):
        return None
    if "." not in host and ":" not in host:  # a dotless name is not a public page
        return None
    return value
