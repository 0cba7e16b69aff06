"""The web routes of receipts and statements, shared by the buyer and seller areas
(each adds them to its blueprint, behind its role check) and the admin area: thin
views over app/money/receipts.py and statements.py, the HTML page and the PDF of a
document drawn from one data model."""
from flask import (
    Blueprint, Response, flash, redirect, render_template, request, stream_with_context, url_for,
)
from flask_login import current_user

from app.auth.sessions import current_account
from app.core import bounds
from app.errors import DomainError
from app.extensions import db
from app.money import receipts, statements
from app.models.types import utcnow
from app.money.receipts import Receipt
from app.services import audit


def _pdf():
    """The PDF module, imported when a PDF is asked for: fpdf2, Pillow and fontTools
    cost every process 30 MB, the ingest's storing process too."""
    from app.money import pdf

    return pdf


STATEMENT_PAGE = 50  # movements per account on one HTML page (SPEC §10: at most 50 rows)


def pdf_response(data: bytes, filename: str) -> Response:
    return Response(data, mimetype="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{filename}"'})


def receipt_page(receipt: Receipt, pdf_url: str, back_url: str, back_label: str) -> str:
    return render_template("money/receipt.html", receipt=receipt, pdf_url=pdf_url,
                           back_url=back_url, back_label=back_label)


def add_routes(bp: Blueprint, back_endpoint: str, back_label: str) -> None:
    """Receipts and monthly statements of the signed-in holder, on `bp`; `back_endpoint`
    is the page that links to them (the balance or the payouts page)."""
    name = bp.name

    def receipt(number: str):
        found = receipts.receipt_for(current_account, number)
        return receipt_page(found, url_for(f"{name}.receipt_pdf", number=found.number),
                            url_for(back_endpoint), back_label)

    def receipt_pdf(number: str):
        found = receipts.receipt_for(current_account, number)
        return pdf_response(_pdf().receipt_pdf(found), found.filename)

    def statement_pick():
        """The month picker's target (a GET form): to that month's statement; without a
        month (the address typed or bookmarked), to this month's."""
        month = request.args.get("month") or f"{utcnow():%Y-%m}"  # months are UTC's
        try:
            first = statements.parse_month(current_account, month)
        except DomainError as exc:
            flash(exc.message, "danger")
            return redirect(url_for(back_endpoint))
        return redirect(url_for(f"{name}.statement", year=first.year, month=first.month))

    def statement(year: int, month: int):
        page = bounds.PAGE.take(request.args.get("page", "1"), "page")
        found = statements.statement_for(
            current_account, statements.check_month(current_account, year, month),
            page=page, page_size=STATEMENT_PAGE)
        return render_template(
            "money/statement.html", statement=found, page=page, page_size=STATEMENT_PAGE,
            closing_label=statements.CLOSING,
            back_url=url_for(back_endpoint), back_label=back_label,
            pdf_url=url_for(f"{name}.statement_file", year=year, month=month, fmt="pdf"),
            csv_url=url_for(f"{name}.statement_file", year=year, month=month, fmt="csv"),
            page_url=lambda p: url_for(f"{name}.statement", year=year, month=month, page=p))

    def statement_file(year: int, month: int, fmt: str):
        found = statements.statement_for(
            current_account, statements.check_month(current_account, year, month))
        if fmt == "pdf":
            return pdf_response(_pdf().statement_pdf(found), found.filename + ".pdf")
        return Response(stream_with_context(statements.statement_csv(found)), mimetype="text/csv",
                        headers={"Content-Disposition":
                                 f'attachment; filename="{found.filename}.csv"'})

    bp.add_url_rule("/receipts/<number>", "receipt", receipt)
    bp.add_url_rule("/receipts/<number>.pdf", "receipt_pdf", receipt_pdf)
    bp.add_url_rule("/statements", "statement_pick", statement_pick)
    bp.add_url_rule("/statements/<int:year>-<int:month>", "statement", statement)
    bp.add_url_rule("/statements/<int:year>-<int:month>.<any(pdf,csv):fmt>", "statement_file",
                    statement_file)


def add_admin_routes(bp: Blueprint) -> None:
    """Any holder's receipt for an admin; each opening is audited."""

    def _audited(number: str) -> Receipt:
        found = receipts.by_number(number)
        audit.record("receipts.view", actor=current_user, subject_type="user",
                     subject_id=found.owner_id, details={"number": found.number},
                     ip=request.remote_addr)
        db.session.commit()
        return found

    def receipt(number: str):
        found = _audited(number)
        return receipt_page(found, url_for("admin.receipt_pdf", number=found.number),
                            url_for("admin.user_detail", user_id=found.owner_id), "Account")

    def receipt_pdf(number: str):
        found = _audited(number)
        return pdf_response(_pdf().receipt_pdf(found), found.filename)

    bp.add_url_rule("/receipts/<number>", "receipt", receipt)
    bp.add_url_rule("/receipts/<number>.pdf", "receipt_pdf", receipt_pdf)
