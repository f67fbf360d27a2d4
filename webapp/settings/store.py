"""PostMaster settings kept in the database, each with a default and a help text.

The store is core: the fetch engine and the scheduler read settings through it, so it depends
on the models alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..extensions import db
from ..models import Setting


@dataclass(frozen=True)
class SettingSpec:
    key: str
    label: str
    default: str
    help: str
    kind: str = "int"  # int | queue | str
    minimum: int = 1
    maximum: int = 10**9


SETTINGS: dict[str, SettingSpec] = {
    s.key: s
    for s in [
        SettingSpec(
            "PostmasterDefaultQueue",
            "Default queue",
            "Raw",
            "Where mail goes when no email address linked to a queue matches its recipients.",
            kind="queue",
        ),
        SettingSpec(
            "FetchIntervalMinutes",
            "Fetch interval (minutes)",
            "10",
            "How often the scheduler fetches every valid mail account.",
            maximum=24 * 60,
        ),
        SettingSpec(
            "MaxMessageSizeMB",
            "Maximum message size (MB)",
            "32",
            "Larger messages are not downloaded; they stay on the server and are reported once.",
            maximum=2048,
        ),
        SettingSpec(
            "MaxMessagesPerRun",
            "Maximum messages per account per run",
            "5000",
            "The rest is fetched by the next run.",
            maximum=10**7,
        ),
        SettingSpec(
            "FetchLogRetentionDays",
            "Keep fetch logs (days)",
            "30",
            "Older fetch logs are purged by the scheduler.",
            maximum=3650,
        ),
        SettingSpec(
            "DedupeRetentionDays",
            "Keep dedupe keys of deleted mail (days)",
            "30",
            "Dedupe keys of messages already deleted from the server are pruned after this. "
            "Keys of mail kept on the server stay.",
            maximum=3650,
        ),
        SettingSpec(
            "TicketHook",
            "Ticket hook",
            "Ticket#",
            "Subjects containing [<hook><number>] are follow-ups of that ticket.",
            kind="str",
        ),
    ]
}


def get_setting(key: str) -> str:
    """The stored value of a setting, or its default."""
    row = db.session.get(Setting, key)
    return row.value if row is not None else SETTINGS[key].default


def get_int_setting(key: str) -> int:
    """A number setting (the form and the CLI only store whole numbers in range)."""
    return int(get_setting(key))


def set_setting(key: str, value: str) -> None:
    """Store a value; the caller commits."""
    row = db.session.get(Setting, key)
    if row is None:
        db.session.add(Setting(key=key, value=value))
    else:
        row.value = value
