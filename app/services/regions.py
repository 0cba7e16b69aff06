"""Pure logic: countries and regions (ISO 3166-1 and 3166-2) by name or code, and
their names in the reader's language -- the one home for both, used by the ingest,
the order filters and the order builder's region picker.

ISO names come from pycountry, plus the translations it ships (the iso-codes
project), so "Москва", "Moskva" and "RU-MOW" all resolve; English exonyms that ISO
lacks are aliases. Lower rank wins: ISO name, its variants, then translations in
_LANGUAGES order (so Russian "Мадрид" is the province, not the Ukrainian community).
A name that is the start of exactly one region's name, once words such as "oblast"
or "область" are set aside, is that region: "Kaliningrad", "Калининград" and
"Kaliningrad Oblast" are RU-KGD ("Kaliningradskaya oblast'" in ISO).

Imports no Flask: the ingest's worker processes use it.
"""
import bisect
import gettext
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import pycountry

from app.services.ingest.fields import text_key

_LANGUAGES = ("ru", "es", "uk", "de", "fr", "it", "pt")
_COUNTRY_ALIASES = {
    "россия": "RU", "рф": "RU", "russia": "RU", "usa": "US", "сша": "US", "america": "US",
    "united states of america": "US", "uk": "GB", "england": "GB", "great britain": "GB",
    "britain": "GB", "великобритания": "GB", "англия": "GB", "испания": "ES", "германия": "DE",
}
_REGION_ALIASES = {
    "moscow": "RU-MOW", "moscow city": "RU-MOW", "мск": "RU-MOW", "msk": "RU-MOW",
    "saint petersburg": "RU-SPE", "st petersburg": "RU-SPE", "st. petersburg": "RU-SPE",
    "petersburg": "RU-SPE", "спб": "RU-SPE", "питер": "RU-SPE", "spb": "RU-SPE",
    "moscow oblast": "RU-MOS", "moscow region": "RU-MOS", "подмосковье": "RU-MOS",
    "leningrad oblast": "RU-LEN", "leningrad region": "RU-LEN", "ленобласть": "RU-LEN",
    "якутия": "RU-SA", "чувашия": "RU-CU", "башкирия": "RU-BA", "удмуртия": "RU-UD",
    "мордовия": "RU-MO", "кузбасс": "RU-KEM", "югра": "RU-KHM", "washington dc": "US-DC",
    "bavaria": "DE-BY", "north rhine-westphalia": "DE-NW", "lower saxony": "DE-NI",
    "hesse": "DE-HE", "saxony": "DE-SN", "thuringia": "DE-TH", "rhineland-palatinate": "DE-RP",
    "catalonia": "ES-CT", "andalusia": "ES-AN", "basque country": "ES-PV",
    "valencian community": "ES-VC", "balearic islands": "ES-IB", "canary islands": "ES-CN",
    "seville": "ES-SE",
}
# Russian sellers write regions in Cyrillic; ISO spells them in this transliteration.
_CYRILLIC = str.maketrans({
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
    "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
    "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
    "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
    "я": "ya",
})
_RUSSIAN_WORDS = {"обл": "область", "респ": "республика", "г": "", "город": "", "гор": ""}
# Words that say what kind of region a name is, not which: left out when a name is
# compared by its start.
_KIND_WORDS = frozenset(text_key(word) for word in (
    "oblast", "oblast'", "oblast’", "region", "province", "state", "krai", "kray", "republic",
    "respublika", "autonomous", "okrug", "avtonomnyy", "avtonomnaya", "область", "край",
    "республика", "автономный", "автономная", "округ", "регион", "провинция", "штат",
    "provincia", "comunidad", "de", "of", "the", "city", "город", "г",
))
_MIN_PREFIX = 4  # shorter starts match too many names to mean one


def _name_variants(name: str) -> list[str]:
    """`Barcelona [Barcelona]`, `Madrid, Comunidad de` -> the forms people write."""
    variants = []
    if "[" in name:
        outer, _, inner = name.partition("[")
        variants += [outer, inner.rstrip("]")]
        name = outer.strip()
    if ", " in name:
        head, _, tail = name.partition(", ")
        variants += [f"{tail} {head}", head]
    return variants


def _bare_key(name: str) -> str:
    """The name's key without its kind words: "Kaliningrad Oblast" -> "kaliningrad"."""
    words = name.casefold().replace("-", " ").replace(",", " ").split()
    return "".join(key for word in words if (key := text_key(word)) not in _KIND_WORDS)


@lru_cache(maxsize=None)
def _translation(domain: str, language: str) -> gettext.NullTranslations:
    return gettext.translation(domain, pycountry.LOCALES_DIR, languages=[language], fallback=True)


@lru_cache(maxsize=1)
def _region_index() -> dict[str, dict[str, tuple[int, bool]]]:
    """Name key -> {subdivision code: (rank, is_top_level)}; built once per process."""
    translations = [_translation("iso3166-2", lang) for lang in _LANGUAGES]
    index: dict[str, dict[str, tuple[int, bool]]] = {}

    def add(name: str, code: str, rank: int, top: bool) -> None:
        codes = index.setdefault(text_key(name), {})
        if rank < codes.get(code, (99,))[0]:
            codes[code] = (rank, top)

    for sub in pycountry.subdivisions:
        top = sub.parent_code is None
        names = [(sub.name, 0)]
        names += [(t.gettext(sub.name), 2 + 2 * i) for i, t in enumerate(translations)]
        for name, rank in names:
            add(name, sub.code, rank, top)
            for variant in _name_variants(name):
                add(variant, sub.code, rank + 1, top)
    for alias, code in _REGION_ALIASES.items():
        add(alias, code, 0, False)
    index.pop("", None)
    return index


@lru_cache(maxsize=1)
def _bare_keys() -> tuple[list[str], list[str]]:
    """Sorted (bare name key, code) pairs of every name in the index, for prefix search."""
    translations = [_translation("iso3166-2", lang) for lang in _LANGUAGES]
    pairs = set()
    for sub in pycountry.subdivisions:
        for name in [sub.name, *(t.gettext(sub.name) for t in translations)]:
            for form in [name, *_name_variants(name)]:
                if key := _bare_key(form):
                    pairs.add((key, sub.code))
    for alias, code in _REGION_ALIASES.items():
        pairs.add((_bare_key(alias), code))
    ordered = sorted(pairs)
    return [key for key, _ in ordered], [code for _, code in ordered]


def load_indexes() -> None:
    """Build every index resolving names needs (a third of a second): an ingest worker
    does it when it starts, not in its first chunk."""
    _region_index()
    _bare_keys()
    _country_index()
    _country_codes()
    _subdivision_codes()


def _by_start(value: str) -> set[str]:
    """Codes of the regions one of whose names starts with `value` (kind words aside;
    Cyrillic also as ISO transliterates it)."""
    keys, codes = _bare_keys()
    found = set()
    for key in {_bare_key(v) for v in _spellings(value)}:
        if len(key) < _MIN_PREFIX:
            continue
        for i in range(bisect.bisect_left(keys, key), len(keys)):
            if not keys[i].startswith(key):
                break
            found.add(codes[i])
    return found


@lru_cache(maxsize=1)
def _country_index() -> dict[str, str]:
    translations = [_translation("iso3166-1", lang) for lang in _LANGUAGES]
    index: dict[str, str] = {}
    for country in pycountry.countries:
        names = {country.name, getattr(country, "official_name", country.name),
                 getattr(country, "common_name", country.name)}
        for name in list(names):
            names |= {t.gettext(name) for t in translations}
            names |= set(_name_variants(name))
        for name in names:
            index.setdefault(text_key(name), country.alpha_2)
        index[country.alpha_3.lower()] = country.alpha_2
    index.update({text_key(alias): code for alias, code in _COUNTRY_ALIASES.items()})
    return index


@lru_cache(maxsize=1)
def _country_codes() -> frozenset[str]:
    return frozenset(c.alpha_2 for c in pycountry.countries)


@lru_cache(maxsize=1)
def _subdivision_codes() -> frozenset[str]:
    return frozenset(s.code for s in pycountry.subdivisions)


@lru_cache(maxsize=4096)
def resolve_country(value: str) -> str | None:
    """ISO alpha-2 for a code, alpha-3 or name (several languages); None if unknown."""
    code = value.strip().upper()
    if len(code) == 2 and code.isascii() and code.isalpha():
        code = "GB" if code == "UK" else code
        return code if code in _country_codes() else None
    return _country_index().get(text_key(value))


def _spellings(value: str) -> list[str]:
    """The value, and Cyrillic also transliterated as ISO spells Russian regions."""
    spellings = [value]
    lowered = value.casefold()
    if any("а" <= ch <= "я" or ch == "ё" for ch in lowered):
        words = [_RUSSIAN_WORDS.get(w, w) for w in lowered.replace(".", " ").split()]
        spellings.append(" ".join(words).translate(_CYRILLIC))
    return spellings


def _region_keys(value: str) -> list[str]:
    return [text_key(spelling) for spelling in _spellings(value)]


def _one(codes: set[str]) -> str | None:
    """The region these codes name, if one: a single code, or a region with the parts
    of it that ISO also lists (its top-level code)."""
    if len(codes) == 1:
        return next(iter(codes))
    tops = {code for code in codes if pycountry.subdivisions.get(code=code).parent_code is None}
    return next(iter(tops)) if len(tops) == 1 and len({c[:2] for c in codes}) == 1 else None


@lru_cache(maxsize=16384)
def resolve_region(value: str, country: str | None, default_country: str | None = None
                   ) -> str | None:
    """ISO 3166-2 code for a region code or name, or None if it cannot be resolved.

    With a known `country` the region must be in it; otherwise the default country is
    tried first, then any single country that has a region of that name (or, failing
    an exact name, whose name starts so).
    """
    code = value.strip().upper().replace(" ", "-").replace("_", "-")
    if code in _subdivision_codes():
        return code if country in (None, code[:2]) else None
    scope = country or default_country
    if scope and code.isalnum() and len(code) <= 3 and f"{scope}-{code}" in _subdivision_codes():
        return f"{scope}-{code}"
    index = _region_index()
    for key in _region_keys(value):
        found = index.get(key, {})
        local = {c: r for c, r in found.items() if scope and c.startswith(scope + "-")}
        if local:  # ties go to the lower level: Madrid the province, not the community
            return min(local, key=lambda c: (*local[c], c))
        if country is None and found and len({c[:2] for c in found}) == 1:
            return min(found, key=lambda c: (*found[c], c))
    starts = _by_start(value)
    if scope:
        local = {c for c in starts if c.startswith(scope + "-")}
        if local or country:
            return _one(local)
    return _one(starts)


_OTHER_NAME = re.compile(r"\s*([^,(]+?)\s*\((\w{3})\)")


@lru_cache(maxsize=1)
def _other_names() -> dict[str, list[tuple[str, str]]]:
    """Code -> [(name, ISO 639-1 language)] from the iso3166-2 package's `localOtherName`
    ("Калининградская область (rus), Kaliningrad (eng)"): the names people use, in the
    region's own language where ISO romanises it (English ones left out: nicknames
    among them). Loaded by the web process only."""
    with resources.files("iso3166_2").joinpath("iso3166-2.json").open(encoding="utf-8") as f:
        data = json.load(f)
    names: dict[str, list[tuple[str, str]]] = {}
    for regions in data.values():
        for code, region in regions.items():
            for name, alpha_3 in _OTHER_NAME.findall(region.get("localOtherName") or ""):
                # Its English names include nicknames ("The Golden State").
                if alpha_3 != "eng":
                    language = pycountry.languages.get(alpha_3=alpha_3)
                    names.setdefault(code, []).append(
                        (name, getattr(language, "alpha_2", alpha_3)))
    return names


# Names for people: the region's own name where the reader reads its language, else
# iso-codes' translation, else the ISO name (romanised where the script is not Latin).
def region_name(code: str, language: str = "en") -> str:
    """"RU-KGD" -> "Kaliningradskaya oblast'" (en), "Калининградская область" (ru);
    in the reader's script, one per language (for a Russian reader "TR-01" is "Адана",
    where ISO and iso-codes have only "Adana"); an unknown code is shown as it is."""
    sub = pycountry.subdivisions.get(code=code)
    if sub is None:
        return code
    for name, name_language in _other_names().get(code, ()):
        if name_language == language:
            return _in_script(name, language)
    return _in_script(_readable(_translation("iso3166-2", language).gettext(sub.name)),
                      language)


# The languages we speak that are not written in Latin letters, and the scheme that
# writes Latin names in their letters (cyrtranslit's: "ua" is Ukrainian).
_CYRILLIC_SCHEMES = {"ru": "ru", "uk": "ua"}
# Latin letters cyrtranslit's schemes keep as they are ("Exuma", "Kwale").
_NO_LETTER = str.maketrans({"x": "кс", "q": "к", "w": "в"})
_LATIN_RUN = re.compile(r"[A-Za-z\u00C0-\u024F\u1E00-\u1EFF\u02B0-\u02FF]+")


@lru_cache(maxsize=8192)
def _in_script(name: str, language: str) -> str:
    """A name whose Latin words are transliterated for a Cyrillic reader (a mix of scripts
    in one list reads as a mistake); unchanged for every other language."""
    scheme = _CYRILLIC_SCHEMES.get(language)
    if scheme is None or not _LATIN_RUN.search(name):
        return name
    import cyrtranslit  # not needed by the ingest's workers
    from anyascii import anyascii

    def plain(run: re.Match) -> str:
        """What the scheme left Latin, letter by letter ("ï" as "i"; it keeps "nj")."""
        return "".join(cyrtranslit.to_cyrillic(c, scheme) for c in anyascii(run.group())
                       if c.isalpha()).translate(_NO_LETTER)

    def cyrillic(run: re.Match) -> str:
        # cyrtranslit reads "Ch" as C + h: it is given lower case, capitals put back.
        word = _LATIN_RUN.sub(plain, cyrtranslit.to_cyrillic(run.group().lower(), scheme))
        return word[:1].upper() + word[1:] if run.group()[:1].isupper() else word

    return _LATIN_RUN.sub(cyrillic, name)


def _readable(name: str) -> str:
    """ISO's list spelling as people write it: "Madrid, Comunidad de" → "Comunidad de
    Madrid", "Barcelona [Barcelona]" → "Barcelona"."""
    name = name.partition(" [")[0]
    head, comma, tail = name.partition(", ")
    return f"{tail} {head}" if comma else name


def country_name(code: str, language: str = "en") -> str:
    """"ES" -> "Spain" (en), "Испания" (ru), from the CLDR through Babel."""
    from babel import Locale, UnknownLocaleError  # not needed by the ingest's workers

    try:
        return Locale.parse(language).territories.get(code.upper(), code)
    except (ValueError, UnknownLocaleError):
        return code


@dataclass(frozen=True)
class RegionMatch:
    code: str
    name: str  # in the reader's language
    local_name: str  # ISO's, in the region's own language
    country: str  # the country's name in the reader's language


@lru_cache(maxsize=16)
def _search_rows(language: str) -> tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]:
    """(code, keys of the names the reader sees, keys of its other names) per region."""
    translations = [_translation("iso3166-2", lang) for lang in _LANGUAGES]
    aliases: dict[str, list[str]] = {}
    for alias, code in _REGION_ALIASES.items():
        aliases.setdefault(code, []).append(alias)
    other = _other_names()
    rows = []
    for sub in pycountry.subdivisions:
        seen = [sub.name, region_name(sub.code, language)]
        others = [*(t.gettext(sub.name) for t in translations), *aliases.get(sub.code, ()),
                  *(name for name, _ in other.get(sub.code, ()))]
        main = {text_key(n) for name in seen for n in (name, *_name_variants(name))}
        rest = {text_key(n) for name in others for n in (name, *_name_variants(name))} - main
        rows.append((sub.code, tuple(k for k in main if k), tuple(k for k in rest if k)))
    return tuple(rows)


def with_parts(codes) -> set[str]:
    """The regions and every region ISO lists inside them (Comunidad de Madrid, ES-MD,
    holds the province of Madrid, ES-M): leads are placed in the smallest region their
    file names, so a buyer who asks for the larger one means these too."""
    parts = _parts()
    found, todo = set(codes), list(codes)
    while todo:
        for part in parts.get(todo.pop(), ()):
            if part not in found:
                found.add(part)
                todo.append(part)
    return found


def outermost(codes) -> list[str]:
    """The regions not inside another of them, as a buyer chose them (with_parts undone)."""
    chosen = set(codes)
    return [code for code in codes
            if pycountry.subdivisions.get(code=code).parent_code not in chosen]


@lru_cache(maxsize=1)
def _parts() -> dict[str, list[str]]:
    parts: dict[str, list[str]] = {}
    for sub in pycountry.subdivisions:
        if sub.parent_code:
            parts.setdefault(sub.parent_code, []).append(sub.code)
    return parts


def search_regions(query: str, language: str = "en", limit: int = 20) -> list[RegionMatch]:
    """Regions whose code or a name (the reader's language, the region's own, or one of
    the languages above) contains `query`: the code itself first, then a name that is
    the query, then names that start with it (the names the reader sees before others),
    then top-level regions."""
    key = text_key(query)
    if not key:
        return []
    code = query.strip().upper()
    ranked = []
    for region, main, rest in _search_rows(language):
        if region == code:
            rank = 0
        elif key in main or key in rest:  # "Moscow" the city before Moscow Oblast
            rank = 0.5
        elif any(k.startswith(key) for k in main):
            rank = 1
        elif any(k.startswith(key) for k in rest):
            rank = 2
        elif any(key in k for k in main):
            rank = 3
        elif any(key in k for k in rest):
            rank = 4
        else:
            continue
        sub = pycountry.subdivisions.get(code=region)
        ranked.append((rank, sub.parent_code is not None, region_name(region, language), region))
    ranked.sort()
    return [region_match(region, language) for *_, region in ranked[:limit]]


def region_match(code: str, language: str = "en") -> RegionMatch:
    """One region as the picker shows it."""
    sub = pycountry.subdivisions.get(code=code)
    local = next((name for name, _ in _other_names().get(code, ())),
                 _readable(sub.name) if sub else code)
    return RegionMatch(code, region_name(code, language), local, country_name(code[:2], language))


def chosen_regions(text: str | None, language: str = "en") -> list[dict]:
    """A regions field's text ("Москва, RU-KGD") as the picker shows it: [{code, name}];
    a value we cannot resolve is kept as typed, for the form to say what is wrong."""
    chosen, seen = [], set()
    for value in (text or "").replace(";", ",").split(","):
        value = value.strip()
        code = value and resolve_region(value, None)
        if value and (code or value) not in seen:
            seen.add(code or value)
            chosen.append({"code": code or value,
                           "name": region_name(code, language) if code else value})
    return chosen
