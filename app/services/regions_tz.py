"""Which clock a lead's consent time is read on: its region's (or country's) time zone.

How a lead is mapped, first match wins:
1. its ISO 3166-2 region in REGION_ZONES below (the subdivisions of the large
   countries that span several zones, each given the zone most of its people live in);
2. a country in COUNTRY_ZONES (several zones, but one holds most people: Spain's
   mainland, Russia's Moscow time, Brazil's Brasília time, ...);
3. a country with a single zone in the IANA table (zone.tab, shipped by the `tzdata`
   package): that zone;
4. otherwise every zone of the country: a time counts as night there only if it is
   night in all of them (the United States without a state, Indonesia, ...), so a lead
   whose clock is uncertain never looks suspicious by itself.
Leads with neither region nor country use the batch's default country.

`consent_zone` is the one clock a consent time written without a zone is read on.
"""
from datetime import datetime, timezone, tzinfo
from functools import lru_cache
from importlib import resources
from zoneinfo import ZoneInfo

_GROUPS = {
    # United States: the zone of each state's largest population.
    "America/New_York": "US-CT US-DE US-DC US-FL US-GA US-IN US-KY US-ME US-MD US-MA US-MI "
                        "US-NH US-NJ US-NY US-NC US-OH US-PA US-RI US-SC US-VT US-VA US-WV",
    "America/Chicago": "US-AL US-AR US-IL US-IA US-KS US-LA US-MN US-MS US-MO US-NE US-ND "
                       "US-OK US-SD US-TN US-TX US-WI",
    "America/Denver": "US-CO US-ID US-MT US-NM US-UT US-WY",
    "America/Phoenix": "US-AZ",
    "America/Los_Angeles": "US-CA US-NV US-OR US-WA",
    "America/Anchorage": "US-AK",
    "Pacific/Honolulu": "US-HI",
    "America/Puerto_Rico": "US-PR US-VI",
    # Canada
    "America/Vancouver": "CA-BC",
    "America/Edmonton": "CA-AB",
    "America/Regina": "CA-SK",
    "America/Winnipeg": "CA-MB",
    "America/Toronto": "CA-ON CA-QC",
    "America/Halifax": "CA-NS CA-PE CA-NB",
    "America/St_Johns": "CA-NL",
    "America/Whitehorse": "CA-YT",
    "America/Yellowknife": "CA-NT",
    "America/Iqaluit": "CA-NU",
    # Australia
    "Australia/Sydney": "AU-NSW AU-ACT",
    "Australia/Melbourne": "AU-VIC",
    "Australia/Brisbane": "AU-QLD",
    "Australia/Adelaide": "AU-SA",
    "Australia/Perth": "AU-WA",
    "Australia/Darwin": "AU-NT",
    "Australia/Hobart": "AU-TAS",
    # Russia: subjects off Moscow time (the rest are on it, see COUNTRY_ZONES).
    "Europe/Kaliningrad": "RU-KGD",
    "Europe/Samara": "RU-SAM RU-UD",
    "Europe/Astrakhan": "RU-AST",
    "Europe/Saratov": "RU-SAR",
    "Europe/Ulyanovsk": "RU-ULY",
    "Asia/Yekaterinburg": "RU-BA RU-CHE RU-KGN RU-ORE RU-PER RU-SVE RU-TYU RU-KHM RU-YAN",
    "Asia/Omsk": "RU-OMS",
    "Asia/Novosibirsk": "RU-NVS",
    "Asia/Barnaul": "RU-ALT RU-AL",
    "Asia/Tomsk": "RU-TOM",
    "Asia/Novokuznetsk": "RU-KEM",
    "Asia/Krasnoyarsk": "RU-KYA RU-TY RU-KK",
    "Asia/Irkutsk": "RU-IRK RU-BU",
    "Asia/Chita": "RU-ZAB",
    "Asia/Yakutsk": "RU-SA RU-AMU",
    "Asia/Vladivostok": "RU-PRI RU-KHA RU-YEV",
    "Asia/Sakhalin": "RU-SAK",
    "Asia/Magadan": "RU-MAG",
    "Asia/Kamchatka": "RU-KAM",
    "Asia/Anadyr": "RU-CHU",
    # Spain's and Portugal's Atlantic islands
    "Atlantic/Canary": "ES-CN ES-GC ES-TF",
    "Atlantic/Azores": "PT-20",
    "Atlantic/Madeira": "PT-30",
    # Brazil and Mexico: states off the capital's time
    "America/Manaus": "BR-AM BR-RR BR-RO",
    "America/Cuiaba": "BR-MT",
    "America/Campo_Grande": "BR-MS",
    "America/Rio_Branco": "BR-AC",
    "America/Tijuana": "MX-BCN",
    "America/Hermosillo": "MX-SON",
    "America/Mazatlan": "MX-SIN MX-NAY MX-BCS",
    "America/Chihuahua": "MX-CHH",
    "America/Cancun": "MX-ROO",
}
REGION_ZONES: dict[str, str] = {
    region: zone for zone, regions in _GROUPS.items() for region in regions.split()}
COUNTRY_ZONES: dict[str, str] = {
    "RU": "Europe/Moscow", "ES": "Europe/Madrid", "PT": "Europe/Lisbon",
    "BR": "America/Sao_Paulo", "MX": "America/Mexico_City", "DE": "Europe/Berlin",
    "UA": "Europe/Kyiv", "NZ": "Pacific/Auckland", "CL": "America/Santiago",
    "AR": "America/Argentina/Buenos_Aires", "EC": "America/Guayaquil",
}


@lru_cache(maxsize=1)
def _country_zone_table() -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = {}
    text = resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            country, _coordinates, zone, *_ = line.split("\t")
            table.setdefault(country, []).append(zone)
    return {country: tuple(zones) for country, zones in table.items()}


@lru_cache(maxsize=4096)
def zones_for(region: str | None, country: str | None) -> tuple[ZoneInfo, ...]:
    """The zone(s) a lead's clock may be on; empty if the country is unknown."""
    if region and region.upper() in REGION_ZONES:
        return (ZoneInfo(REGION_ZONES[region.upper()]),)
    country = (country or (region or "")[:2]).upper()
    if country in COUNTRY_ZONES:
        return (ZoneInfo(COUNTRY_ZONES[country]),)
    return tuple(ZoneInfo(zone) for zone in _country_zone_table().get(country, ()))


_REFERENCE = datetime(2025, 1, 15, 12, tzinfo=timezone.utc)  # any fixed instant


@lru_cache(maxsize=4096)
def consent_zone(region: str | None, country: str | None) -> tzinfo:
    """The zone a lead's local times are read in: its one zone, or for a country of
    several without a known region the middle one by UTC offset (the smallest error
    whichever it really was: Chicago's time for the United States), or UTC if unknown."""
    zones = zones_for(region, country)
    if not zones:
        return timezone.utc
    offsets = [_REFERENCE.astimezone(zone).utcoffset() for zone in zones]
    middle = sorted(offsets)[(len(offsets) - 1) // 2]
    return zones[offsets.index(middle)]  # the IANA table lists the main zone first
