"""Checking cron expressions without a scheduler: five fields, each value in its range."""

from __future__ import annotations

import re

_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {n: i + 1 for i, n in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}),
    ("day of week", 0, 7, {n: i for i, n in enumerate("SUN MON TUE WED THU FRI SAT".split())}),
)
_ITEM = re.compile(r"^(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(\d+))?$")


def cron_problem(expression: str) -> str | None:
    """Why ``expression`` is not a valid five-field cron expression, or None when it is."""
    fields = expression.split()
    if len(fields) != 5:
        return f"'{expression}' is not a cron expression: five fields, minute hour day month weekday"
    for text, (name, low, high, names) in zip(fields, _FIELDS):
        for item in text.split(","):
            match = _ITEM.match(item)
            if not match:
                return f"cron {name} field '{text}' is not valid"
            if match.group(2) is not None and int(match.group(2)) == 0:
                return f"cron {name} field '{text}': a step of 0 never fires"
            if match.group(1) == "*":
                continue
            for value in match.group(1).split("-"):
                number = names.get(value.upper()) if not value.isdigit() else int(value)
                if number is None or not low <= number <= high:
                    return f"cron {name} value '{value}' is outside {low}-{high}"
    return None
