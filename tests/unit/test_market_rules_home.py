"""SPEC §4 rule 8: every fill rule is defined once, in app/market/rules.py. A
comparison on a column a fill rule is about, written anywhere else in app/, is a
second definition of that rule."""
import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
RULE_HOME = APP / "market" / "rules.py"
# The columns the fill rules compare: floor, lead cap, caps per period, terms as
# planned, expiry, lookback.
PERIODS = ("hour", "day", "week", "month")
RULE_COLUMNS = {"floor_price", "sold_count", "revision", "expires_at", "claimed_at",
                *(f"{prefix}_{p}" for prefix in ("cap", "spend_cap") for p in PERIODS),
                *(f"{p}_{what}" for p in PERIODS for what in ("key", "leads", "spend"))}
# Where such a comparison is not a fill rule: the models' CHECK constraints.
ELSEWHERE = {APP / "models"}
# Comparisons on those columns that are about something else, each with its reason.
NOT_FILL_RULES = {
    # SPEC §7 retention: leads never sold lose their contacts after a while.
    ("app/services/privacy.py", "Lead.sold_count == 0"),
    # SPEC §3 re-pricing: a seller's new cap for a lead already sold stays within the
    # buyers it has and the cap it sold under; the fills still check LEAD_CAP.
    ("app/services/batches.py", "Lead.sold_count == 0"),
    ("app/services/batches.py", "Lead.sold_count >= cap"),
    # SPEC §3 upload: whether the seller's tick was for the floor the page asked about.
    ("app/seller/routes.py", "_floor_asked() == terms.floor_price"),
    # SPEC §2: an emailed one-time link's own expiry, not an order's.
    ("app/people/account_links.py", "link.expires_at <= utcnow()"),
    ("app/people/account_links.py", "AccountLink.expires_at > now"),
    # SPEC §14: an opt-out link's own expiry.
    ("app/people/opt_out.py", "OptOutRequest.expires_at > now"),
    # SPEC §11: how long a seller's ping stands for its post, not an order's expiry.
    ("app/realtime/auction.py", "ping.expires_at <= utcnow()"),
}


def _names(node) -> set[str]:
    return {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def _comparisons(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            touched = _names(node) & RULE_COLUMNS
            if touched:
                yield node.lineno, sorted(touched), ast.unparse(node)


def test_fill_rules_are_compared_only_in_their_home():
    found = []
    for path in sorted(APP.rglob("*.py")):
        if path == RULE_HOME or any(parent in ELSEWHERE for parent in path.parents):
            continue
        for line, columns, text in _comparisons(path):
            if (str(path.relative_to(APP.parent)), text) in NOT_FILL_RULES:
                continue
            found.append(f"{path.relative_to(APP.parent)}:{line}: {text}")
    assert found == [], "fill rules written outside app/market/rules.py:\n" + "\n".join(found)


def test_the_scan_sees_a_rule_written_twice(tmp_path):
    copy = tmp_path / "copy.py"
    copy.write_text("def sell(lead, price):\n    return lead.floor_price <= price\n")
    assert [line for line, _, _ in _comparisons(copy)] == [2]
