"""Peer-to-peer charger sharing (issue 13): owners, drivers, tariffs, session cost, statements.

The API the web page and the admin API call. Every function that touches the database is
a plain synchronous store job: run it with `await control.store.run(partial(f, ...))`
(writes) or on the reader. Money is always an int of minor units (cents, ...) of an ISO 4217
currency; energy is Wh, time is seconds.

- money.py: `parse_amount("25.50", "KES") -> 2550`, `format_amount(2550, "KES") ->
  "KES 25.50"`, `check_currency`, `wire_amount` (the decimal number OCPP carries).
- pricing.py: `Price`, `session_cost(price, energy_wh, seconds)`, `set_tariff`,
  `tariff_of`, `price_of(tx)`, `running_cost(tx, at)`; each transaction keeps the price in
  force when it began (Transaction.price_*), and its `cost`.
- owners.py: `add_owner`, `find_owner(login)`, `check_password` (scrypt: run it in a worker
  thread), `set_password`, `set_station_owner`, `stations_of`, `list_owners`, `owner_record`.
- drivers.py: `add_driver`, `find_driver(login)`, `driver_for_phone`, `driver_token` (the
  id token a web remote start uses), `link_token`, `sessions_of`, `list_drivers`.
- codes.py: one-time sign-in codes: `issue(phone, now) -> code`, `redeem(phone, code,
  now) -> bool`, `deliver(phone, code)` (for now: a log line for the operator).
- statements.py: `statement(owner_id, year, month, data_price_per_mb)`: a month's sessions,
  energy, revenue and each charger's data use and its cost.
- links.py: `driver_page_url(public_url, station_id, connector)`: the QR code's URL,
  <public_url>/s/<station>/<connector>.
- display.py: OCPP 2.0.1/2.1 block I (tariff and cost): the tariff as personalMessage,
  totalCost, CostUpdated.
"""
