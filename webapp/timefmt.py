"""How times are written: for machines (`--json`, JSON endpoints) `iso_utc`, one format
everywhere; for people (every screen, the `when` template filter) `screen_time`.

Stored times are naive UTC (see `models.utcnow`); the `Z` says so to whoever reads the JSON.
"""

from __future__ import annotations

from datetime import UTC, date, datetime


def iso_utc(value: datetime | None) -> str | None:
    """`2026-12-02T10:15:00Z` for a stored (naive UTC or aware) time; None stays None."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="seconds") + "Z"


def iso_date(value: date | None) -> str | None:
    """`2026-12-02` for a date (a secret's expiry); None stays None."""
    return value.isoformat() if value is not None else None


def screen_time(value: datetime | None, seconds: bool = False) -> str:
    """`2026-12-02 10:15 UTC`: a stored time as every screen shows it ("" for None)."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")
