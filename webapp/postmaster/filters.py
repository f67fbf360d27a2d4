"""PostMaster filters: match a mail's headers and set X-OTOBO-* values, like OTOBO's.

The valid filters are compiled once per fetch run into a `FilterSet`. Regular expressions
run on Google RE2 (linear time: no catastrophic backtracking), case-insensitively like
OTOBO's `=~ m{...}i`. Every condition on one header becomes part of one RE2 Set, so a mail
costs one scan per distinct header, not one per condition. The work per message is bounded
too: a header or the body is matched on its first MAX_VALUE_BYTES only, and the time budget
MAX_SECONDS is checked between headers and between filters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import re2
from sqlalchemy import select

from ..extensions import db
from ..models import PostmasterFilter
from .parse import ParsedMail

MAX_CONDITIONS = 12
MAX_ACTIONS = 12
MAX_PATTERN_CHARS = 1000
MAX_VALUE_BYTES = 64 * 1024  # of one header (all its occurrences) or of the body
MAX_SECONDS = 1.0  # per message, for all filters together
BODY = "Body"
# The headers the form offers; any other X-... header can be matched too.
MATCH_HEADERS = (
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "Message-ID",
    "X-Loop",
    "Auto-Submitted",
    "Precedence",
    BODY,
)
# What a filter can set: every X-OTOBO-* header the pipeline obeys.
SET_HEADERS = (
    "X-OTOBO-Queue",
    "X-OTOBO-Priority",
    "X-OTOBO-State",
    "X-OTOBO-Ignore",
    "X-OTOBO-SenderType",
    "X-OTOBO-Title",
    "X-OTOBO-CustomerUser",
    "X-OTOBO-CustomerNo",
    "X-OTOBO-IsVisibleForCustomer",
    "X-OTOBO-FollowUp-State",
    "X-OTOBO-FollowUp-Priority",
    "X-OTOBO-FollowUp-SenderType",
    "X-OTOBO-FollowUp-IsVisibleForCustomer",
)
_SET_BY_LOWER = {h.lower(): h for h in SET_HEADERS}
_MATCH_BY_LOWER = {h.lower(): h for h in MATCH_HEADERS}


def _options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # a bad pattern is reported to the admin, not to stderr
    options.never_capture = True
    return options


_OPTIONS = _options()


def canonical_match_header(name: str) -> str | None:
    """The spelling of a header a condition may match (From, X-Spam-Flag, Body), or None."""
    name = name.strip()
    known = _MATCH_BY_LOWER.get(name.lower())
    if known is not None:
        return known
    if (
        name.lower().startswith("x-")
        and len(name) > 2
        and all(c.isalnum() or c == "-" for c in name)
    ):
        return name
    return None


def canonical_set_header(name: str) -> str | None:
    """The spelling of an X-OTOBO-* header a filter may set, or None."""
    return _SET_BY_LOWER.get(name.strip().lower())


def pattern_error(pattern: str) -> str | None:
    """Why RE2 refuses a pattern (a message for the admin), or None when it compiles."""
    if not pattern:
        return "Enter a regular expression."
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"The regular expression is too long (at most {MAX_PATTERN_CHARS} characters)."
    try:
        re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        return (
            f"Not a valid regular expression ({reason}). Filters use RE2 syntax, which has "
            "no backreferences (\\1) and no lookahead or lookbehind ((?=...), (?!...), "
            "(?<=...))."
        )
    return None


@dataclass(frozen=True)
class Condition:
    header: str  # canonical, see canonical_match_header
    pattern: str
    negate: bool = False


@dataclass(frozen=True)
class CompiledFilter:
    name: str
    stop_after_match: bool
    conditions: tuple[Condition, ...]
    actions: tuple[tuple[str, str], ...]  # (X-OTOBO-* header, value)
    # Bits (one per distinct header and pattern of the whole FilterSet) that must be set /
    # must be clear in a mail's match mask: a filter costs two integer operations a mail.
    positive: int = 0
    negative: int = 0


@dataclass(frozen=True)
class FilterSet:
    """The valid filters of one fetch run, compiled: immutable, shared by every message."""

    filters: tuple[CompiledFilter, ...] = ()
    sets: Mapping[str, re2.Set] = field(default_factory=dict)  # header key -> its patterns
    bits: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # header -> pattern bits
    lowered: Mapping[str, str] = field(default_factory=dict)  # the header keys but Body
    # (header bits that must be set, must be clear) of each filter with a Body condition
    body_checks: tuple[tuple[int, int], ...] = ()
    broken: tuple[str, ...] = ()  # log lines for stored filters that cannot run

    def __bool__(self) -> bool:
        return bool(self.filters)


def conditions_from_json(text: str | None) -> list[Condition]:
    """The stored conditions of a filter row."""
    return [
        Condition(c["header"], c["pattern"], bool(c.get("negate")))
        for c in json.loads(text or "[]")
    ]


def actions_from_json(text: str | None) -> list[tuple[str, str]]:
    """The stored (header, value) actions of a filter row."""
    return [(a["header"], a["value"]) for a in json.loads(text or "[]")]


def compile_filters(filters: Iterable[CompiledFilter]) -> FilterSet:
    """One RE2 Set per header over every distinct pattern on it (one bit each); a filter
    that does not compile is left out (and reported in `broken`)."""
    slots: dict[str, dict[str, int]] = {}  # header -> pattern -> its bit
    kept: list[CompiledFilter] = []
    broken: list[str] = []
    count = 0
    for f in sorted(filters, key=lambda f: f.name):
        errors = [e for c in f.conditions if (e := pattern_error(c.pattern))]
        if errors or not f.conditions:
            broken.append(f"filter {f.name} skipped: {errors[0] if errors else 'no condition'}")
            continue
        positive = negative = 0
        for c in f.conditions:
            header_slots = slots.setdefault(_key(c.header), {})
            if c.pattern not in header_slots:
                header_slots[c.pattern] = 1 << count
                count += 1
            bit = header_slots[c.pattern]
            if c.negate:
                negative |= bit
            else:
                positive |= bit
        kept.append(
            CompiledFilter(f.name, f.stop_after_match, f.conditions, f.actions, positive, negative)
        )
    sets = {}
    for header, header_slots in slots.items():
        rs = re2.Set.SearchSet(_OPTIONS)
        for pattern in header_slots:
            rs.Add(pattern)
        rs.Compile()
        sets[header] = rs
    body_mask = sum(slots.get(BODY, {}).values())
    heads = ~body_mask
    return FilterSet(
        filters=tuple(kept),
        sets=sets,
        bits={h: tuple(header_slots.values()) for h, header_slots in slots.items()},
        lowered={h: h for h in sets if h != BODY},
        body_checks=tuple(
            (f.positive & heads, f.negative & heads)
            for f in kept
            if (f.positive | f.negative) & body_mask
        ),
        broken=tuple(broken),
    )


def load_filters() -> FilterSet:
    """The valid filters from the database, compiled (once per fetch run)."""
    rows = db.session.scalars(
        select(PostmasterFilter)
        .where(PostmasterFilter.validity == "valid")
        .order_by(PostmasterFilter.name)
    )
    return compile_filters(
        CompiledFilter(
            row.name,
            row.stop_after_match,
            tuple(conditions_from_json(row.conditions)),
            tuple(actions_from_json(row.actions)),
        )
        for row in rows
    )


def _key(header: str) -> str:
    """Header names match case-insensitively (X-Spam-Flag is x-spam-flag); Body is the text."""
    low = header.strip().lower()
    return BODY if low == BODY.lower() else low


def header_values(mail: ParsedMail, wanted: Iterable[str]) -> dict[str, bytes]:
    """The text each wanted header is matched on (occurrences joined by newlines, capped),
    by _key of the header."""
    keys = {_key(h) for h in wanted}
    return _values(mail, {k: k for k in keys if k != BODY}, BODY in keys)


def _values(mail: ParsedMail, lower: Mapping[str, str], body: bool) -> dict[str, bytes]:
    found: dict[str, list[str]] = {}
    for name, value in mail.headers:
        header = lower.get(name.lower())
        if header is not None:
            found.setdefault(header, []).append(value)
    values = {
        h: "\n".join(v).encode("utf-8", "replace")[:MAX_VALUE_BYTES] for h, v in found.items()
    }
    if body:
        # The plain text (or the HTML's text) the article gets: at most 4 bytes a character.
        values[BODY] = mail.body_text[:MAX_VALUE_BYTES].encode("utf-8", "replace")[:MAX_VALUE_BYTES]
    return values


class _OutOfTime(Exception):
    pass


def _scan(fs: FilterSet, header: str, value: bytes) -> int:
    bits = fs.bits[header]
    mask = 0
    for slot in fs.sets[header].Match(value) or ():
        mask |= bits[slot]
    return mask


def _needs_body(fs: FilterSet, mask: int) -> bool:
    """Whether a filter with a Body condition has all its header conditions holding: the
    body (the largest text by far) is encoded and scanned only then."""
    return any(mask & pos == pos and not mask & neg for pos, neg in fs.body_checks)


def _matched_mask(fs: FilterSet, mail: ParsedMail, deadline: float) -> int:
    """The bits of every condition pattern that matches the mail (one RE2 scan a header)."""
    values = _values(mail, fs.lowered, body=False)
    mask = 0
    for header in fs.sets:
        if time.monotonic() > deadline:
            raise _OutOfTime
        value = values.get(header)
        if value is not None:
            mask |= _scan(fs, header, value)
    if fs.body_checks and _needs_body(fs, mask):
        if time.monotonic() > deadline:
            raise _OutOfTime
        mask |= _scan(fs, BODY, _values(mail, {}, body=True)[BODY])
    return mask


def apply_filters(fs: FilterSet, mail: ParsedMail, log: list[str]) -> dict[str, str]:
    """The X-OTOBO-* values the matching filters set (in name order; a later filter
    overrides an earlier one), with a log line per matching filter. Never raises: a filter
    that fails is logged and treated as absent."""
    log.extend(fs.broken)
    if not fs:
        return {}
    deadline = time.monotonic() + MAX_SECONDS
    try:
        mask = _matched_mask(fs, mail, deadline)
    except _OutOfTime:
        log.append(f"filters skipped: over the time limit of {MAX_SECONDS:g} s per message")
        return {}
    except Exception as exc:  # an RE2 failure must not lose the mail: match one by one
        log.append(f"filters: matching failed ({type(exc).__name__}: {exc}); one by one")
        return _apply_one_by_one(fs, mail, log, deadline)
    result: dict[str, str] = {}
    for f in fs.filters:
        # All conditions hold; a negated one holds when its pattern does not match.
        if mask & f.positive == f.positive and not mask & f.negative:
            _record(f, result, log)
            if f.stop_after_match:
                break
    return result


def _record(f: CompiledFilter, result: dict[str, str], log: list[str]) -> None:
    result.update(f.actions)
    sets = ", ".join(f"{h}={v}" for h, v in f.actions) or "nothing"
    log.append(f"filter {f.name} matched: set {sets}")


def condition_holds(condition: Condition, values: Mapping[str, bytes]) -> bool:
    """One condition alone (for the Test button and the fallback path)."""
    value = values.get(_key(condition.header))
    found = value is not None and re2.compile(condition.pattern, _OPTIONS).search(value)
    return bool(found) != condition.negate


def _apply_one_by_one(
    fs: FilterSet, mail: ParsedMail, log: list[str], deadline: float
) -> dict[str, str]:
    values = header_values(mail, fs.sets)
    result: dict[str, str] = {}
    for f in fs.filters:
        if time.monotonic() > deadline:
            log.append(f"filters from {f.name} on skipped: over the time limit")
            break
        try:
            matched = all(condition_holds(c, values) for c in f.conditions)
        except Exception as exc:
            log.append(f"filter {f.name} failed on this message and is ignored: {exc}")
            continue
        if matched:
            _record(f, result, log)
            if f.stop_after_match:
                break
    return result


@dataclass
class ConditionReport:
    condition: Condition
    holds: bool


@dataclass
class FilterReport:
    """What one filter does with one mail: each condition, and what it would set."""

    name: str
    conditions: list[ConditionReport]
    matched: bool
    would_set: dict[str, str]


def explain(f: CompiledFilter, mail: ParsedMail) -> FilterReport:
    """Evaluate one filter condition by condition (the Test button; stores nothing)."""
    values = header_values(mail, {c.header for c in f.conditions})
    reports = [ConditionReport(c, condition_holds(c, values)) for c in f.conditions]
    matched = bool(reports) and all(r.holds for r in reports)
    return FilterReport(f.name, reports, matched, dict(f.actions) if matched else {})


def obeyed_headers(
    trusted: Mapping[str, str], filters: FilterSet, mail: ParsedMail, log: list[str]
) -> dict[str, str]:
    """The X-OTOBO-* headers to obey: the trusted ones, then what the filters set."""
    return {**trusted, **apply_filters(filters, mail, log)}
