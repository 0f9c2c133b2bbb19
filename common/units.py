"""Time units in seconds, and the inverse: a duration as people say it.

Drift times are seconds after programming everywhere in the project; these are the only
definitions of a day, a month and a year (365 days).
"""

from __future__ import annotations

MINUTE_S = 60.0
HOUR_S = 3600.0
DAY_S = 86_400.0
WEEK_S = 7 * DAY_S
MONTH_S = 30 * DAY_S
YEAR_S = 365 * DAY_S

# The points of a deployment's life that reports and lifetime schedules use.
LIFETIME_S = {"1 hour": HOUR_S, "1 day": DAY_S, "1 week": WEEK_S, "1 month": MONTH_S, "1 year": YEAR_S}


def human_time(t_s: float) -> str:
    """3600 -> '1 hour', 86400 -> '1 day', 31536000 -> '1 year', 5 -> '5 s'."""
    for unit, seconds in (("year", YEAR_S), ("month", MONTH_S), ("week", WEEK_S), ("day", DAY_S),
                          ("hour", HOUR_S), ("min", MINUTE_S)):
        if t_s >= seconds:
            value = t_s / seconds
            return f"{value:.3g} {unit}" + ("s" if value != 1 and unit != "min" else "")
    return f"{t_s:.3g} s"
