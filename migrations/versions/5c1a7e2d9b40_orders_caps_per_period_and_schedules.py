"""orders: caps per period and weekly schedules; a buyer's time zone

The daily cap becomes the day's lead cap (`cap_day`), its count and day the day's
counters (the day it kept was UTC's; it counts on in the order's zone); delivery
hours become a schedule of one window every day (an overnight one runs past
midnight; equal hours meant always open). Spend and the other periods count from
this migration on. Downgrading keeps the day's cap and turns a one-window-every-day
schedule back into hours; other schedules and caps do not survive it.

Revision ID: 5c1a7e2d9b40
Revises: 0f34e6e32eca
Create Date: 2026-12-04 18:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5c1a7e2d9b40'
down_revision = '0f34e6e32eca'
branch_labels = None
depends_on = None

PERIODS = ("hour", "day", "week", "month")
KEY_LENGTHS = {"hour": 24, "day": 10, "week": 8, "month": 7}
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

orders = sa.table(
    "orders", sa.column("id", sa.Integer), sa.column("daily_cap", sa.Integer),
    sa.column("day_filled", sa.Integer), sa.column("fill_day", sa.String),
    sa.column("delivery_start_hour", sa.SmallInteger),
    sa.column("delivery_end_hour", sa.SmallInteger), sa.column("cap_day", sa.Integer),
    sa.column("day_leads", sa.Integer), sa.column("day_key", sa.String),
    sa.column("schedule", sa.JSON(none_as_null=True)))


def _checks():
    return [(f"within_{cap}_{p}", f"{cap}_{p} IS NULL OR {p}_{used} <= {cap}_{p}")
            for p in PERIODS for cap, used in (("cap", "leads"), ("spend_cap", "spend"))]


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=False,
                                      server_default='UTC'))
    with op.batch_alter_table('orders', schema=None) as batch_op:
        for p in PERIODS:
            batch_op.add_column(sa.Column(f'cap_{p}', sa.Integer(), nullable=True))
            batch_op.add_column(sa.Column(f'spend_cap_{p}', sa.BigInteger(), nullable=True))
            batch_op.add_column(sa.Column(f'{p}_key', sa.String(length=KEY_LENGTHS[p]),
                                          nullable=True))
            batch_op.add_column(sa.Column(f'{p}_leads', sa.Integer(), nullable=False,
                                          server_default='0'))
            batch_op.add_column(sa.Column(f'{p}_spend', sa.BigInteger(), nullable=False,
                                          server_default='0'))
        batch_op.add_column(sa.Column('schedule', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('revision', sa.Integer(), nullable=False,
                                      server_default='0'))

    bind = op.get_bind()
    for order_id, cap, filled, day, start, end in bind.execute(sa.select(
            orders.c.id, orders.c.daily_cap, orders.c.day_filled, orders.c.fill_day,
            orders.c.delivery_start_hour, orders.c.delivery_end_hour)).all():
        schedule = None
        if start is not None and end is not None and start != end:
            schedule = [{"days": EVERY_DAY, "start": f"{start:02d}:00", "end": f"{end:02d}:00",
                         "price": None}]
        bind.execute(orders.update().where(orders.c.id == order_id).values(
            cap_day=cap, day_leads=filled if day else 0, day_key=day, schedule=schedule))

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_orders_within_daily_cap'), type_='check')
        for name in ('daily_cap', 'day_filled', 'fill_day', 'delivery_start_hour',
                     'delivery_end_hour'):
            batch_op.drop_column(name)
        for name, condition in _checks():
            batch_op.create_check_constraint(op.f(f'ck_orders_{name}'), condition)


def downgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('daily_cap', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('day_filled', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('fill_day', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('delivery_start_hour', sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column('delivery_end_hour', sa.SmallInteger(), nullable=True))

    bind = op.get_bind()
    for order_id, cap, filled, day, schedule in bind.execute(sa.select(
            orders.c.id, orders.c.cap_day, orders.c.day_leads, orders.c.day_key,
            orders.c.schedule)).all():
        hours = {}
        if schedule and len(schedule) == 1 and schedule[0]["days"] == EVERY_DAY:
            start, end = schedule[0]["start"], schedule[0]["end"]
            if start.endswith(":00") and end.endswith(":00"):
                hours = {"delivery_start_hour": int(start[:2]), "delivery_end_hour": int(end[:2])}
        bind.execute(orders.update().where(orders.c.id == order_id).values(
            daily_cap=cap, day_filled=filled, fill_day=day, **hours))

    with op.batch_alter_table('orders', schema=None) as batch_op:
        for name, _ in _checks():
            batch_op.drop_constraint(op.f(f'ck_orders_{name}'), type_='check')
        for p in PERIODS:
            for column in (f'cap_{p}', f'spend_cap_{p}', f'{p}_key', f'{p}_leads', f'{p}_spend'):
                batch_op.drop_column(column)
        batch_op.drop_column('schedule')
        batch_op.drop_column('revision')
        batch_op.alter_column('day_filled', server_default=None)
        batch_op.create_check_constraint(op.f('ck_orders_within_daily_cap'),
                                         'daily_cap IS NULL OR day_filled <= daily_cap')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('timezone')
