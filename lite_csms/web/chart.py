"""The data-budget chart as numbers for an inline SVG: one bar per day of the cycle and a
line at the day's share of the cap. No script, no image to fetch: a few hundred bytes."""

from __future__ import annotations

from typing import Any

WIDTH, HEIGHT = 300, 80


def budget_chart(report: dict[str, Any]) -> dict[str, Any]:
    """From a budget report with the per-day breakdown (control.budget_report(by="day")):
    bars [{x, y, w, h, day, bytes, over}], the allowance line's y, the used share of the cap
    in percent (capped at 100 for the bar's width) and the bar's level (ok, warn, over)."""
    days = report.get("breakdown") or []
    cap = int(report.get("cap") or 0)
    total_days = max(1, round(float(report.get("days_elapsed", 0))
                              + float(report.get("days_remaining", 0))))
    allowance = cap / total_days if cap else 0
    top = max([d["bytes"] for d in days] + [allowance, 1])
    width = WIDTH / max(len(days), total_days)
    bars = []
    for index, day in enumerate(days):
        height = day["bytes"] / top * (HEIGHT - 2)
        bars.append({"x": round(index * width + 0.5, 1), "w": round(max(width - 1, 1), 1),
                     "y": round(HEIGHT - height, 1), "h": round(height, 1),
                     "day": day["day"], "bytes": day["bytes"],
                     "over": bool(allowance) and day["bytes"] > allowance})
    used = int(report.get("used") or 0)
    share = used / cap * 100 if cap else 0.0
    level = "over" if share >= 100 else "warn" if used >= int(report.get("warn_at") or cap) \
        else "ok"
    return {"bars": bars, "width": WIDTH, "height": HEIGHT,
            "line_y": round(HEIGHT - allowance / top * (HEIGHT - 2), 1) if allowance else None,
            "share": round(share, 1), "bar_pct": min(100.0, round(share, 1)), "level": level}
