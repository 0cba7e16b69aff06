"""Differential tests: the phone and email fast paths against the libraries.

A fast path may decline (and let the library decide) but must never accept what the
library rejects, nor normalise differently. Inputs are seeded-random and cover the
shapes sellers send and the near misses around them.
"""
import random

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from app.services.ingest.validate import (
    FAST_PHONE_REGIONS, email_fast_path, normalise_email, normalise_phone, phone_fast_path,
)

PHONE_CASES = 200_000
EMAIL_CASES = 100_000
DEFAULT_REGIONS = FAST_PHONE_REGIONS + ("FR", "KZ", "UA", "IT", "CA")
OTHER_CODES = ("7", "1", "34", "44", "49", "33", "39", "380", "375", "86", "0", "999", "3")
PUNCTUATION = (" ", " ", "-", "-", ".", "(", ")", "  ", " - ", "/", " / ")


def library_phone(raw: str, region: str):
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return (phonenumbers.format_number(number, PhoneNumberFormat.E164),
            phonenumbers.region_code_for_number(number))


def _example_nsns() -> list[tuple[str, str]]:
    """Valid national numbers of every type for many regions, to mutate."""
    found = []
    for region in DEFAULT_REGIONS + ("GG", "IM", "JE", "PR", "AG"):
        for kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE,
                     PhoneNumberType.TOLL_FREE, PhoneNumberType.PREMIUM_RATE,
                     PhoneNumberType.SHARED_COST, PhoneNumberType.VOIP,
                     PhoneNumberType.PERSONAL_NUMBER, PhoneNumberType.PAGER,
                     PhoneNumberType.UAN, PhoneNumberType.VOICEMAIL):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                found.append((str(example.country_code),
                              phonenumbers.national_significant_number(example)))
    return found


def _nsn(rng: random.Random, examples) -> tuple[str, str]:
    """A (country code, national number) pair: mostly near-valid, some random."""
    roll = rng.random()
    cc, nsn = rng.choice(examples)
    if roll < 0.55:  # same prefix, random tail: usually still valid
        keep = rng.randint(1, max(1, len(nsn) - 2))
        nsn = nsn[:keep] + "".join(rng.choice("0123456789") for _ in nsn[keep:])
    elif roll < 0.7:  # one digit more or less
        nsn = nsn + rng.choice("0123456789") if rng.random() < 0.5 else nsn[:-1]
    elif roll < 0.8:
        nsn = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 16)))
    elif roll < 0.9:  # well-known mobile ranges with random tails
        cc, start, length = rng.choice((("7", "9", 10), ("1", "2", 10), ("34", "6", 9),
                                        ("44", "7", 10), ("49", "15", 11), ("49", "17", 11),
                                        ("7", "8", 10), ("7", "7", 10), ("1", "1", 10)))
        nsn = start + "".join(rng.choice("0123456789") for _ in range(length - len(start)))
    if rng.random() < 0.05:
        cc = rng.choice(OTHER_CODES)
    return cc, nsn


def _written(rng: random.Random, cc: str, nsn: str) -> str:
    """The number as a seller might have typed it."""
    roll = rng.random()
    if roll < 0.35:
        digits = "+" + cc + nsn
    elif roll < 0.5:
        digits = rng.choice(("8", "0", "1", "00", "810", "011", "0")) + nsn
    elif roll < 0.6:
        digits = cc + nsn
    elif roll < 0.65:
        digits = rng.choice(("00", "810", "011", "+0", "++", "8")) + cc + nsn
    elif roll < 0.7:
        digits = "+" + cc + rng.choice(("0", "8", "1", "180020")) + nsn
    else:
        digits = nsn
    out = []
    for ch in digits:
        if out and rng.random() < 0.25:
            out.append(rng.choice(PUNCTUATION))
        out.append(ch)
    text = "".join(out)
    roll = rng.random()
    if roll < 0.03:
        position = rng.randrange(len(text) + 1)
        text = text[:position] + rng.choice("abcxABCOo#*/;,+~") + text[position:]
    elif roll < 0.05:
        text += rng.choice((" x12", " ext. 5", "#", ";ext=3", " доб. 7", ",,2"))
    elif roll < 0.06:
        text = text.replace("1", "١").replace("5", "５")  # non-ASCII digits
    elif roll < 0.08:
        text = rng.choice(("(", ")", "-", ".", "tel:", "+")) + text
    elif roll < 0.1:
        text += rng.choice((")", "-", ".", "("))
    elif roll < 0.11:
        text = " " * rng.randint(1, 250) + text
    return text


def test_phone_fast_path_agrees_with_phonenumbers():
    rng = random.Random(20240601)
    examples = _example_nsns()
    accepted = library_valid = 0
    for _ in range(PHONE_CASES):
        raw = _written(rng, *_nsn(rng, examples))
        region = rng.choice(DEFAULT_REGIONS)
        fast = phone_fast_path(raw, region)
        expected = library_phone(raw, region)
        library_valid += expected is not None
        if fast is not None:
            accepted += 1
            assert fast == expected, (raw, region, fast, expected)
    # The fast path must actually carry the common shapes, or it is not worth having.
    assert accepted > 0.5 * library_valid, (accepted, library_valid)


def test_normalise_phone_is_the_library_answer_on_declined_shapes():
    for raw, region in (("+44 7911 123456", "RU"), ("8 800 555-35-35", "RU"),
                        ("+33 6 12 34 56 78", "ES"), ("(212) 555-0123 ext. 7", "US")):
        expected = library_phone(raw, region)
        assert normalise_phone(raw, region) == expected


ASCII_LOCAL = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
LOCAL_EXTRA = "._%+-" + "!#$&'*/=?^`{|}~" + ' "(),:;<>@[\\]'
UNICODE_CHARS = "äöüñéøßжёйпримерत网络İıſﬀ\u0301\u200b"
TLDS = ("com", "ru", "es", "de", "co", "io", "info", "travel", "xn--p1ai", "рф", "c", "1com",
        "com1", "123", "local", "test", "onion", "arpa", "invalid", "localhost", "example",
        "x" * 63, "x" * 64, "COM", "Ru")


def _local_part(rng: random.Random) -> str:
    roll = rng.random()
    length = rng.choice((1, 2, 5, 8, 12, 20, 63, 64, 65, 80))
    if roll < 0.75:
        alphabet = ASCII_LOCAL + "._-+"
    elif roll < 0.85:
        alphabet = ASCII_LOCAL + LOCAL_EXTRA
    else:
        alphabet = ASCII_LOCAL + UNICODE_CHARS + "._"
    local = "".join(rng.choice(alphabet) for _ in range(length))
    if rng.random() < 0.03:
        local = f'"{local}"'
    return local


def _domain(rng: random.Random) -> str:
    labels = []
    for _ in range(rng.choice((0, 1, 1, 1, 2, 3, 5))):
        roll = rng.random()
        if roll < 0.85:
            label = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-")
                            for _ in range(rng.choice((1, 2, 3, 6, 10, 20, 62, 63, 64))))
        elif roll < 0.93:
            label = rng.choice(("xn--80ak6aa92e", "xn--e1afmkfd", "xn--abc", "xn--", "ab--cd",
                                "a--b", "-abc", "abc-", "a.b", ""))
        else:
            label = "".join(rng.choice("abcпримерñäß网络-") for _ in range(rng.randint(1, 12)))
        labels.append(label)
    return ".".join(labels + [rng.choice(TLDS)])


def _email(rng: random.Random) -> str:
    text = f"{_local_part(rng)}@{_domain(rng)}"
    roll = rng.random()
    if roll < 0.03:
        text = text.upper()
    elif roll < 0.05:
        text += "."
    elif roll < 0.07:
        text = "." + text
    elif roll < 0.08:
        text = text.replace("@", "@@", 1)
    elif roll < 0.09:
        text = text.replace("@", "", 1)
    elif roll < 0.1:
        text = f"Name <{text}>"
    elif roll < 0.11:
        text = text.split("@")[0] + "@[192.168.0.1]"
    elif roll < 0.12:
        text = text.replace(".", "..", 1)
    elif roll < 0.13:
        text = "a" * 200 + text
    return text


def test_email_fast_path_agrees_with_email_validator():
    rng = random.Random(4242)
    accepted = 0
    for _ in range(EMAIL_CASES):
        raw = _email(rng)
        fast = email_fast_path(raw)
        if fast is None:
            continue  # declined: the library decides, nothing to compare
        accepted += 1
        try:
            expected = validate_email(raw, check_deliverability=False).normalized.lower()
        except EmailNotValidError as exc:
            expected = f"rejected: {exc}"
        assert fast == expected, (raw, fast, expected)
    assert accepted > EMAIL_CASES // 10, accepted  # enough near misses were compared


def test_common_emails_take_the_fast_path():
    rng = random.Random(7)
    names = ("ivan", "maria.petrova", "j.smith", "ana_lopez", "o'neil", "kim-lee", "user+tag")
    domains = ("gmail.com", "mail.ru", "yandex.ru", "hotmail.es", "bk.ru", "t-online.de",
               "outlook.co.uk", "sub.example-corp.com", "icloud.com")
    for _ in range(2000):
        raw = f"{rng.choice(names)}{rng.randint(0, 9999)}@{rng.choice(domains)}"
        raw = raw.upper() if rng.random() < 0.2 else raw
        expected = validate_email(raw, check_deliverability=False).normalized.lower()
        if "'" not in raw:
            assert email_fast_path(raw) == expected, raw
        assert normalise_email(raw) == expected


def test_normalise_email_falls_back_to_the_library():
    assert normalise_email("Иван@Пример.рф") == "иван@пример.рф"
    assert normalise_email("John.Doe@EXAMPLE.COM") == "john.doe@example.com"
    assert normalise_email("user@localhost") is None
    assert normalise_email("a" * 5000 + "@example.com") is None
