"""Pure logic: the SPEC §3 fields a hosted form may ask for, how each is shown, and the
visitor's words for a lead's verdict codes (the verdicts themselves come from the
ingest validation, app/services/ingest/validate.py)."""
from dataclasses import dataclass


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    input: str = "text"  # an <input> type, or "select"
    autocomplete: str = "off"
    options: tuple[tuple[str, str], ...] = ()


FORM_FIELDS: dict[str, FormField] = {f.name: f for f in (
    FormField("first_name", "First name", autocomplete="given-name"),
    FormField("last_name", "Last name", autocomplete="family-name"),
    FormField("email", "Email", "email", "email"),
    FormField("phone", "Phone", "tel", "tel"),
    FormField("age", "Age", "number"),
    FormField("birth_date", "Date of birth", "date", "bday"),
    FormField("gender", "Gender", "select", options=(
        ("f", "Female"), ("m", "Male"), ("other", "Other"), ("unknown", "Prefer not to say"))),
    FormField("country", "Country", autocomplete="country-name"),
    FormField("region", "Region or state", autocomplete="address-level1"),
    FormField("city", "City", autocomplete="address-level2"),
    FormField("postal_code", "Postal code", autocomplete="postal-code"),
    FormField("marital_status", "Marital status", "select", options=(
        ("single", "Single"), ("partnered", "Partnered"), ("married", "Married"),
        ("divorced", "Divorced"), ("widowed", "Widowed"), ("unknown", "Prefer not to say"))),
    FormField("employed", "Employed", "select", options=(
        ("yes", "Yes"), ("no", "No"), ("unknown", "Prefer not to say"))),
    FormField("interests", "Interests (separated by commas)"),
    FormField("budget", "Budget"),
    FormField("authority", "Do you decide on the purchase?"),
    FormField("need", "What do you need?"),
    FormField("timeframe", "When do you need it?"),
)}
CONTACT_FIELDS = ("email", "phone")

# Verdict code -> (the field it is shown at, the visitor's sentence). The sentences
# of validate.py speak to a seller about rows and batches; a visitor reads these.
VISITOR_WORDS: dict[str, tuple[str | None, str]] = {
    "no_contact": ("email", "Enter your email address or your phone number."),
    "invalid_email": ("email", "“{email}” is not an email address we can use: check it for "
                               "typing mistakes."),
    "invalid_phone": ("phone", "“{phone}” is not a phone number we can use: check it, and "
                               "start it with + and the country code if it is not a "
                               "{country} number."),
    "implausible_age": ("age", "You must be between 18 and 100 years old to sign up."),
    "unknown_region": ("region", "We do not recognise this place: write its full name."),
    "invalid_postal_code": ("postal_code", "“{postal_code}” is not a postal code: use letters "
                                           "and digits only, such as 90210 or SW1A 1AA."),
    "duplicate_own": (None, "You have already sent us these details: there is no need to send "
                            "them again."),
    "suppressed": (None, "These contact details are on a do-not-contact list, so we cannot "
                         "accept them."),
    "bad_encoding": (None, "Some of what you typed has characters we cannot read: please "
                           "type it again."),
}


def visitor_problems(codes: list[str], answers: dict[str, str], country: str,
                     fallback: str) -> dict[str | None, list[str]]:
    """Field name (None: the whole form) -> the sentences to show there."""
    shown: dict[str | None, list[str]] = {}
    for code in codes:
        field, words = VISITOR_WORDS.get(code, (None, fallback))
        if field == "age" and "age" not in answers:
            field = "birth_date"
        if field == "region" and "region" not in answers:
            field = "country" if "country" in answers else "city"
        if field == "email" and "email" not in answers:
            field = "phone"
        values = {name: answers.get(name, "") for name in ("email", "phone", "postal_code")}
        text = words.format(country=country, **values)
        shown.setdefault(field if field in answers or field is None else None, []).append(text)
    return shown
