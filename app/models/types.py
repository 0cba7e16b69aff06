"""Column helpers shared by the models."""
import enum
from datetime import datetime, timezone

import sqlalchemy as sa


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def enum_column(enum_cls: type[enum.Enum], name: str) -> sa.Enum:
    """A portable enum: stored as its value in a VARCHAR guarded by a CHECK constraint."""
    return sa.Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class UTCDateTime(sa.TypeDecorator):
    """Timezone-aware UTC datetimes on every database (SQLite forgets the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given; use an aware UTC datetime")
            value = value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def checked_by_trigger() -> dict:
    """A foreign key's info: PostgreSQL enforces it with triggers that check a whole
    statement's rows in one go, not as a foreign key that checks each row on its own
    (migration b7e4d2a9c1f0; SQLite keeps the foreign key). Schema comparisons leave
    it out there (`in_schema`)."""
    return {"postgresql": "trigger"}


def in_schema(dialect: str):
    """Alembic's include_object for a database of `dialect`: the models' objects that
    database holds as declared."""
    def include(obj, name, type_, reflected, compare_to) -> bool:
        return reflected or obj.info.get(dialect) != "trigger"
    return include
