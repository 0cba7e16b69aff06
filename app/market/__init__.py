"""The market (SPEC §4, §5): orders, the matcher and the settlement of fills.

Each module says what kind it is:
- `rules` (pure): every fill rule, defined once, as Python and as SQL;
- `filters` (pure): an order's filters, parsed, tested in memory, stated as SQL;
- `schedule` (pure): an order's weekly delivery windows and their prices;
- `book` (pure): the order book and the allocation of leads to orders;
- `snapshot` (queries): leads, orders and claims loaded for planning;
- `queries` (queries): a buyer's order, the supply estimate;
- `operations` (operations, flush): place, change, pause, cancel, close an order;
- `settle`, `grouped` (operations, flush): store single fills and groups of fills;
- `jobs` (jobs, commit): match a batch or leads, fill an order, match open orders,
  expire orders.
Imports go one way (`rules` uses `schedule` and `filters`); docs/market.md maps each rule of §4 to its home.
"""
