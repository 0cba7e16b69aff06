"""Counting the SQL statements a request runs: a page whose count grows with its
rows has an N+1 (a query per row)."""
from contextlib import contextmanager

import sqlalchemy as sa

from app.extensions import db


@contextmanager
def counted(note=lambda statement: statement):
    """Yields a list that collects every statement run inside the block (as
    `note(statement)`, called in the thread that runs it)."""
    statements: list = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(note(statement))

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)


def queries_for(client, url: str) -> int:
    """How many statements a GET of `url` runs (it must answer 200)."""
    client.get(url)  # warm: the session's user and caches are loaded by the first request
    with counted() as statements:
        response = client.get(url)
    assert response.status_code == 200, response.status_code
    return len(statements)
