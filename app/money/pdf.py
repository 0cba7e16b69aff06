"""Pure logic: receipts and statements as PDF documents (fpdf2), drawn from the same
data models the HTML pages show (app/money/receipts.py, statements.py).

The font is Fira Sans from the `fontpkg-fira-sans` package (static regular and bold
files: a variable font would be instanced by fontTools on every document, seconds
each): it covers Latin with accents, Cyrillic, Greek and the currency signs we print
(€ £ ₽), and is read from the installed package, never fetched at run time.
"""
from fontpkg_fira_sans import ROOT as FIRA_ROOT
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from app.formatting import format_money
from app.money.receipts import Party, Receipt
from app.money import statements
from app.money.statements import Statement

FONT = "FiraSans"
_FONT_FILES = {"": FIRA_ROOT / "files" / "FiraSans-Regular.ttf",
               "B": FIRA_ROOT / "files" / "FiraSans-Bold.ttf"}
_GREY = (96, 96, 96)


def _document(title: str, exchange: Party) -> FPDF:
    pdf = FPDF(format="A4")
    pdf.set_title(title)
    pdf.set_author(exchange.name)
    pdf.set_creator(exchange.name)
    for style, path in _FONT_FILES.items():
        pdf.add_font(FONT, style=style, fname=path)
    pdf.set_auto_page_break(True, margin=18)
    pdf.add_page()
    pdf.set_font(FONT, "B", 15)
    pdf.cell(0, 8, exchange.name, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 9)
    pdf.set_text_color(*_GREY)
    for line in exchange.lines:
        pdf.cell(0, 4.5, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    pdf.ln(6)
    return pdf


def _heading(pdf: FPDF, title: str, number: str) -> None:
    pdf.set_font(FONT, "B", 13)
    pdf.cell(120, 8, title)
    pdf.set_font(FONT, "", 10)
    pdf.cell(0, 8, number, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)


def _party(party: Party) -> str:
    return "\n".join((party.name,) + party.lines)


def receipt_pdf(receipt: Receipt) -> bytes:
    pdf = _document(f"Receipt {receipt.number}", receipt.issuer)
    _heading(pdf, f"Receipt: {receipt.title}", receipt.number)
    rows = [("Receipt number", receipt.number),
            ("Date", f"{receipt.at:%Y-%m-%d %H:%M} UTC"),
            ("Paid by", _party(receipt.payer)),
            ("Paid to", _party(receipt.payee)),
            ("Amount", format_money(receipt.amount, receipt.currency)),
            ("Currency", receipt.currency),
            ("Method", receipt.method),
            ("Ledger transaction", f"#{receipt.ledger_transaction_id}"),
            *receipt.details]
    pdf.set_font(FONT, "", 10)
    with pdf.table(col_widths=(45, 125), text_align=("LEFT", "LEFT"), first_row_as_headings=False,
                   line_height=6) as table:
        for label, value in rows:
            row = table.row()
            row.cell(label)
            row.cell(value)
    pdf.ln(6)
    pdf.set_font(FONT, "", 8)
    pdf.set_text_color(*_GREY)
    pdf.multi_cell(0, 4, f"Issued by {receipt.issuer.name} from its ledger. This receipt "
                   f"refers to ledger transaction #{receipt.ledger_transaction_id}, shown on "
                   "the account's monthly statement.")
    return bytes(pdf.output())


def statement_pdf(statement: Statement) -> bytes:
    pdf = _document(f"{statement.title} ({statement.number})", statement.exchange)
    _heading(pdf, statement.title + (" (to date)" if statement.to_date else ""),
             statement.number)
    pdf.set_font(FONT, "", 10)
    pdf.multi_cell(0, 5, _party(statement.holder), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)

    def money(amount: int) -> str:
        return format_money(amount, statement.currency)

    pdf.cell(0, 6, f"{statement.accounts_label}: opening balance {money(statement.opening)}"
             f"   ·   Closing balance {money(statement.closing)}   ·   Currency "
             f"{statement.currency}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for account in statement.accounts:
        pdf.ln(4)
        pdf.set_font(FONT, "B", 11)
        pdf.cell(0, 7, account.label, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(FONT, "", 8.5)
        with pdf.table(col_widths=(28, 14, 78, 25, 25), line_height=4.6,
                       text_align=("LEFT", "RIGHT", "LEFT", "RIGHT", "RIGHT")) as table:
            table.row(("Date", "Txn", "Description", "Amount", "Balance"))
            table.row((f"{statement.month:%Y-%m-%d}", "", "Opening balance", "",
                       money(account.opening)))
            for line in account.lines:
                table.row((f"{line.at:%Y-%m-%d %H:%M}", str(line.transaction_id),
                           line.description, money(line.amount), money(line.balance)))
            table.row(("", "", statements.CLOSING, money(account.closing - account.opening),
                       money(account.closing)))
        if account.totals:
            pdf.ln(2)
            pdf.set_font(FONT, "B", 9)
            pdf.cell(0, 5, "Totals by kind", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_font(FONT, "", 9)
            for label, amount in account.totals:
                pdf.cell(120, 5, label)
                pdf.cell(0, 5, money(amount), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())
