"""`lite-csms budget …`: what stations used of their data cap, their caps, the policy's moves."""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import datetime
from typing import Any

import orjson

from lite_csms.budget import (
    counters,
    cycles,
    explain,
    memory,
    overrides,
    policy,
    report,
    served,
    usage,
)
from lite_csms.cli import budget_text as text
from lite_csms.cli.output import CliError
from lite_csms.config import Settings
from lite_csms.db.models import Station
from lite_csms.ocppj import timestamps


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    budget = sub.add_parser("budget", help="data budgets: usage, caps and the policy's moves")
    cmds = budget.add_subparsers(dest="budget_command", required=True)
    report = cmds.add_parser("report", parents=[common],
                             help="each station's use of its cap in a billing cycle")
    report.add_argument("--month", help="YYYY-MM: the cycle that starts in that month "
                                        "(default: the current cycle)")
    report.add_argument("--station", help="only this station")
    report.add_argument("--by", choices=usage.BREAKDOWNS, help="break each station down")
    report.add_argument("--at", help="report as of this UTC instant (ISO 8601; default now)")
    fmt = report.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true",
                     help="the breakdown rows with --by, else one row per station")
    setting = cmds.add_parser("set", parents=[common], help="a station's own budget settings")
    setting.add_argument("station_id")
    setting.add_argument("--cap", help="e.g. 20MB, 500kB, 1.5GB, 2MiB or bytes")
    setting.add_argument("--cycle-day", help="1 to 28: the day each billing cycle starts")
    setting.add_argument("--warn", dest="warn_ratio", help="warn at this share of the cap")
    setting.add_argument("--nat-timeout", help="seconds the carrier's NAT keeps an idle link")
    setting.add_argument("--policy", choices=("on", "off"))
    setting.add_argument("--clear", action="store_true",
                         help="drop this station's overrides first (back to the defaults)")
    setting.add_argument("--release", action="append", metavar="KEY",
                         help="hand a key an operator set (`config set`) back to the policy; "
                         "repeat for more keys, or 'all'")
    setting.add_argument("--json", action="store_true")
    why = cmds.add_parser("explain", parents=[common],
                          help="what the budget policy did to a station, and why")
    why.add_argument("station_id")
    why.add_argument("--limit", type=int, default=explain.DEFAULT_LIMIT,
                     help="show the latest N changes")
    why.add_argument("--at", help="usage as of this UTC instant (ISO 8601; default now)")
    why.add_argument("--json", action="store_true")


def _known(station_id: str) -> str:
    if Station.get_or_none(Station.id == station_id) is None:
        raise CliError(f"no station {station_id!r}")
    return station_id


def _now(at: str | None) -> datetime:
    if not at:
        return timestamps.now_utc()
    try:
        return timestamps.parse(at)
    except ValueError:
        raise CliError(f"--at {at!r} is not an ISO 8601 date-time") from None


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _print_csv(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})


def _csv_value(value: Any) -> Any:
    # Spelt as in the JSON output, so the two formats read back alike.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def report_usage(args: argparse.Namespace, settings: Settings) -> int:
    now = _now(args.at)
    try:
        month = cycles.parse_month(args.month) if args.month else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.station:
        usages = [usage.station_usage(_known(args.station), settings, now, month)]
    else:
        usages = usage.all_usage(settings, now, month)
    usages.sort(key=lambda u: (-u.used, u.station_id))
    single = args.station is not None
    # One station: a breakdown by action unless asked otherwise, and always the day chart.
    by = args.by or ("action" if single else None)
    mark = counters.last_flush()
    flushed_at = None if mark is None else mark.flushed_at
    # The server's own interval when it wrote one; else this configuration's.
    interval = settings.traffic_flush_interval
    if mark is not None and mark.interval_s is not None:
        interval = mark.interval_s
    records = [report.station_record(u, now, by, with_days=single or by == "day",
                                     flushed_at=flushed_at) for u in usages]
    if args.json:
        _print_json({"layer": usage.BILLED_LAYER, "at": now, "flushed_at": flushed_at,
                     "flush_interval_s": interval,
                     "stations": records})
    elif args.csv:
        # A table per invocation: the breakdown asked for, else the summary (one station too).
        if args.by is None:
            _print_csv([{k: v for k, v in r.items() if k != "top_actions"} for r in records])
        else:
            _print_csv([{"station": r["station_id"], **row} for r in records
                        for row in r["breakdown"]])
    else:
        _print_report(now, usages, records, by,
                      text.flushed(flushed_at, interval))
    return 0


def _print_report(now: datetime, usages: list[usage.StationUsage],
                  records: list[dict[str, Any]], by: str | None, flushed: str) -> None:
    lines = [*text.header(now), flushed, "", *text.summary(usages)]
    if by is None:
        lines += ["", *(text.top_actions(r["station_id"], r["top_actions"]) for r in records)]
    for u, record in zip(usages, records, strict=True):
        if by is not None and by != "day":
            lines += ["", f"{u.station_id} by {by}, {u.cycle.label}:"]
            rows = record["breakdown"]
            lines += (text.table(rows, text.BREAKDOWN_COLUMNS[by]) if rows
                      else ["  (nothing in this cycle)"])
        if "days" in record:
            lines += ["", *text.day_chart(u, record["days"])]
    print("\n".join(lines))


def set_budget(args: argparse.Namespace, settings: Settings) -> int:
    station_id = _known(args.station_id)
    try:
        change = overrides.parse_change({
            "cap": args.cap, "cycle_day": args.cycle_day, "warn_ratio": args.warn_ratio,
            "nat_timeout": args.nat_timeout, "policy": args.policy})
        if change.is_empty() and not args.clear and not args.release:
            raise CliError("nothing to set: give --cap, --cycle-day, --warn, --nat-timeout, "
                           "--policy, --release or --clear")
        if not change.is_empty() or args.clear:
            overrides.apply(station_id, change, clear=args.clear)
        if args.release:
            keys = overrides.parse_release(args.release)
            released = memory.release(station_id, keys)
            print(f"released to the policy: {', '.join(released) or '(none was owned)'}",
                  file=sys.stderr)
    except overrides.BudgetError as exc:
        raise CliError(str(exc)) from None
    budget = usage.effective_budget(station_id, settings)
    if args.json:
        _print_json(budget.as_dict())
    else:
        print("\n".join(text.effective(budget)))
    return 0


def explain_station(args: argparse.Namespace, settings: Settings) -> int:
    station_id = _known(args.station_id)
    now = _now(args.at)
    limit = max(1, args.limit)
    # The server's flags are not ours to see: what it recorded at start-up stands in for them.
    view = served.overlay(settings)
    settings = view.settings
    source = text.served_line(view.started_at, settings)
    if args.json:
        _print_json({**explain.explanation(station_id, settings, now, limit),
                     "settings_source": {"source": "server" if view.started_at else "config",
                                         "started_at": view.started_at, "text": source}})
        return 0
    print(source)
    lines = text.explain(usage.station_usage(station_id, settings, now),
                         usage.effective_budget(station_id, settings),
                         explain.changes(station_id, limit),
                         policy.current_plan(station_id, settings))
    print("\n".join(lines))
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    command = {"report": report_usage, "set": set_budget, "explain": explain_station}
    return command[args.budget_command](args, settings)
