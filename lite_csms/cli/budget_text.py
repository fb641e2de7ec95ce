"""The budget report as text for a person: sizes in kB/MB, tables and a per-day bar chart."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import orjson

from lite_csms.budget.units import format_size
from lite_csms.budget.usage import EffectiveBudget, StationUsage
from lite_csms.config import Settings

CHART_WIDTH = 40
_EIGHTHS = " ▏▎▍▌▋▊▉"
_FULL = "█"
_SIZE_COLUMNS = {"in", "out", "total", "bytes", "setup", "tcp_setup", "tls_setup",
                 "http_setup", "overhead", "payload_in", "payload_out", "retransmitted"}


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column in _SIZE_COLUMNS and isinstance(value, int):
        return format_size(value)
    if column.startswith("share") and isinstance(value, float):
        return f"{value * 100:.1f}%"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    cells = [[_cell(c, row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return [line.rstrip() for line in lines]


def header(at: datetime) -> list[str]:
    return [f"Data budget as of {at.strftime('%Y-%m-%d %H:%M')} UTC. Billed layer: ip "
            "(every byte on the wire, both directions; 1 MB = 1,000,000 bytes)."]


def flushed(at: datetime | None, interval: float) -> str:
    """Where the figures stand: the server writes its counts once a flush interval."""
    if at is None:
        return "Traffic counts: no flush recorded yet (the server writes them every " \
            f"{interval:g} s)."
    return (f"Traffic counts as of {at.strftime('%Y-%m-%d %H:%M:%S')} UTC, the server's last "
            f"flush (written every {interval:g} s; live traffic since then is not in them).")


def summary(usages: Sequence[StationUsage]) -> list[str]:
    rows = [{"station": u.station_id, "cycle": u.cycle.label, "used": format_size(u.used),
             "cap": format_size(u.cap), "used%": f"{u.used_ratio * 100:.1f}%",
             "projected": format_size(u.projected), "status": u.status,
             "why": "" if u.status == "ok" else u.reason} for u in usages]
    if not rows:
        return ["No stations."]
    return table(rows, ["station", "cycle", "used", "cap", "used%", "projected", "status",
                        "why"])


def top_actions(station_id: str, actions: Sequence[dict[str, Any]]) -> str:
    if not actions:
        return f"{station_id}: no traffic in this cycle"
    parts = [f"{a['action']} {format_size(a['total'])} ({a['share'] * 100:.0f}%)"
             for a in actions]
    return f"{station_id} top actions: " + ", ".join(parts)


BREAKDOWN_COLUMNS = {
    "action": ["action", "in", "out", "total", "share", "messages"],
    "layer": ["layer", "in", "out", "total", "overhead", "share_of_ip"],
    "direction": ["direction", "meaning", "bytes"],
    "connection": ["opened_at", "closed_at", "protocol", "tls", "tls_resumed", "setup",
                   "in", "out", "total", "retransmitted", "close_reason"],
    "day": ["day", "bytes"],
}


def _bar(amount: int, scale: float) -> str:
    eighths = round(amount / scale * CHART_WIDTH * 8) if scale else 0
    if amount > 0 and eighths == 0:
        eighths = 1  # a day with any traffic never looks empty
    full, part = divmod(eighths, 8)
    return _FULL * full + (_EIGHTHS[part] if part else "")


def day_chart(usage: StationUsage, days: Sequence[dict[str, Any]]) -> list[str]:
    """One bar per day, scaled to the widest bar (or to the daily share, if wider, so its
    mark always fits); "│" marks the cap's daily share: cap / days in the cycle."""
    share = usage.cap / usage.cycle.length_days
    lines = [f"{usage.station_id} per day, ip bytes; │ marks the cap's daily share "
             f"{format_size(share)} ({format_size(usage.cap)} / {usage.cycle.length_days} "
             "days)"]
    if not days:
        return [*lines, "  (the cycle has not started)"]
    scale = max(max(d["bytes"] for d in days), share)
    mark = min(round(share / scale * CHART_WIDTH), CHART_WIDTH)
    for d in days:
        cells = list(_bar(d["bytes"], scale).ljust(CHART_WIDTH + 1))
        # Drawn through a longer bar as well: a notch shows how far past its share a day went.
        cells[mark] = "│"
        over = "  over share" if d["bytes"] > share else ""
        day = date.fromisoformat(d["day"])
        lines.append(f"{day.strftime('%m-%d %a')}  {''.join(cells)}  "
                     f"{format_size(d['bytes'])}{over}")
    return lines


def effective(budget: EffectiveBudget) -> list[str]:
    def origin(name: str) -> str:
        return "(this station)" if name in budget.overrides else "(default)"

    rows = [("station", budget.station_id, ""),
            ("cap", format_size(budget.cap_bytes) + f" = {budget.cap_bytes} bytes",
             origin("cap_bytes")),
            ("cycle_day", f"{budget.cycle_day} (cycles start that day, 00:00 UTC)",
             origin("cycle_day")),
            ("warn_ratio", f"{budget.warn_ratio:g} (warning at "
             f"{format_size(budget.cap_bytes * budget.warn_ratio)})", origin("warn_ratio")),
            ("nat_timeout", f"{budget.nat_timeout} s", origin("nat_timeout")),
            ("policy", "on" if budget.policy_enabled else "off", origin("policy_enabled")),
            ("level", budget.level, "")]
    return [f"{name:<12} {value}  {note}".rstrip() for name, value, note in rows]


def _setting_text(item: Any) -> str:
    # The policy's own format may grow; show what is recognisable, the rest as JSON.
    if isinstance(item, dict):
        key = item.get("key", item.get("name", item.get("setting")))
        outcome = item.get("status", item.get("outcome", item.get("result")))
        if key is not None:
            text = f"{key}={item.get('value', '?')}"
            return f"{text} ({outcome})" if outcome is not None else text
    return orjson.dumps(item).decode()


def settings_lines(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = [v if isinstance(v, dict) and "key" in v else
                 {"key": k, **v} if isinstance(v, dict) else {"key": k, "value": v}
                 for k, v in value.items()]
    if isinstance(value, list):
        return [_setting_text(item) for item in value] or ["(none)"]
    return [orjson.dumps(value).decode()]


def served_line(started_at: datetime | None, settings: Settings) -> str:
    """Where explain's server settings come from: what the running server recorded at its
    start, or (none recorded) this command's own config file and environment."""
    heartbeat = (f"heartbeat_interval {settings.heartbeat_interval} "
                 f"({'explicit' if 'heartbeat_interval' in settings.explicit else 'default'})"
                 f", boot_retry_interval {settings.boot_retry_interval}")
    if started_at is None:
        return (f"Server settings: the config file/environment view ({heartbeat}); no running "
                "server has recorded its own in this database.")
    return (f"Server settings: as the running server was started "
            f"({started_at.strftime('%Y-%m-%d %H:%M:%S')} UTC): {heartbeat}.")


def decision_line(item: Any) -> str:
    """One setting's outcome: `sent: K=V (answer): why`, `skipped: …`, `yielded: …`; entries
    of the older format (no outcome) read as sent."""
    if isinstance(item, dict) and "outcome" in item and "key" in item:
        value = {None: "(none)", "": "(empty)"}.get(item.get("value"), item.get("value"))
        answer = f" ({item['status']})" if item.get("status") else ""
        return f"{item['outcome']}: {item['key']}={value}{answer}: {item.get('reason', '')}"
    return f"sent: {_setting_text(item)}"


def explain(usage: StationUsage, budget: EffectiveBudget,
            changes: Sequence[dict[str, Any]],
            now_plan: dict[str, Any] | None = None) -> list[str]:
    policy = "on" if budget.policy_enabled else "off"
    lines = [
        f"{usage.station_id}: policy level {budget.level!r}, policy {policy}.",
        f"Cycle {usage.cycle.label}: used {format_size(usage.used)} of "
        f"{format_size(usage.cap)} ({usage.used_ratio * 100:.1f}%), projected "
        f"{format_size(usage.projected)} by the cycle's end; status {usage.status} "
        f"({usage.reason}).",
    ]
    if now_plan is not None:
        lines += plan_lines(now_plan)
    if not changes:
        lines.append(f"No policy changes recorded: the policy has never changed "
                     f"{usage.station_id}'s settings.")
        return lines
    lines.append(f"Policy changes, oldest first ({len(changes)}):")
    for change in changes:
        lines.append(f"  {change['at'].strftime('%Y-%m-%d %H:%M')} UTC  "
                     f"{change['from_level']} -> {change['to_level']}")
        lines.append(f"    why: {change['reason']}")
        settings = change["settings"]
        if isinstance(settings, list) and settings:
            lines += [f"    {decision_line(item)}" for item in settings]
        else:
            lines += [f"    sent: {setting}" for setting in settings_lines(settings)]
    return lines


def plan_lines(now_plan: dict[str, Any]) -> list[str]:
    """What the policy does with each setting now, and the server's keepalive for it."""
    if not now_plan["settings"]:
        return ["Now: nothing to decide (the policy is off, or the station never connected)."
                if not now_plan["policy_enabled"] or now_plan["protocol"] is None
                else "Now: no settings."]
    lines = [f"Now, at level {now_plan['level']!r} ({now_plan['protocol']}): BootNotification "
             f"interval {now_plan['heartbeat_interval']}, server TCP keepalive after "
             f"{now_plan['tcp_keepalive_idle']} s idle."]
    for item in now_plan["settings"]:
        line = decision_line(item)
        # Now, nothing has been sent yet: "sent" means "to send at the next connection".
        if line.startswith("sent:"):
            line = "to send:" + line[len("sent:"):]
        lines.append(f"  {line}")
    for item in now_plan.get("refused", []):
        value = {None: "(none)", "": "(empty)"}.get(item.get("value"), item.get("value"))
        who = item.get("requested_by") or "the policy"
        firmware = item.get("firmware_version") or "(none)"
        if item.get("scope") == "action":
            lines.append(f"  refused: the action {item['key']} itself (CALLERROR "
                         f"{item['status']}) under firmware {firmware}")
            continue
        what = " (any value: key unknown)" if item.get("scope") == "key" else ""
        lines.append(f"  refused: {item['key']}={value}{what} ({item['status']}), asked by "
                     f"{who} under firmware {firmware}")
    return lines
