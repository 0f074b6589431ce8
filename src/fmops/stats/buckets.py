"""Time buckets of a series: a minute, an hour or a day, numbered from the Unix epoch.

A bucket is `floor(epoch seconds / width)`: the same integer on SQLite and PostgreSQL, and UTC days
start at multiples of 86,400, so day buckets are calendar days (UTC).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, cast, func, literal_column

from fmops.errors import UserError
from fmops.stats.filters import StatsFilters
from fmops.store.models import Span

MAX_POINTS = 1500  # a day of minutes fits; a month of minutes does not
AUTO_POINTS = 360  # automatic buckets: the finest that gives at most this many points


class Bucket(StrEnum):
    minute = "minute"
    hour = "hour"
    day = "day"

    @property
    def seconds(self) -> int:
        return _SECONDS[self]


_SECONDS = {Bucket.minute: 60, Bucket.hour: 3600, Bucket.day: 86_400}


def choose_bucket(filters: StatsFilters, requested: Bucket | None) -> Bucket:
    """The requested bucket if the range fits in MAX_POINTS of it; else the finest that stays readable."""
    if requested is None:
        for bucket in Bucket:
            if filters.seconds / bucket.seconds <= AUTO_POINTS:
                return bucket
        return Bucket.day
    points = math.ceil(filters.seconds / requested.seconds)
    if points > MAX_POINTS:
        raise UserError(
            f"{points} {requested.value} buckets is more than {MAX_POINTS}: ask for a shorter range or a "
            "coarser bucket (or leave bucket out to choose one from the range)",
            param="bucket",
        )
    return requested


def bucket_expression(dialect: str, width: int) -> ColumnElement[Any]:
    """The bucket number of each span's start time."""
    # The width is written into the SQL, not bound: PostgreSQL must see the grouped expression and
    # the selected one as the same text.
    divisor: ColumnElement[int] = literal_column(str(int(width)), Integer)
    if dialect == "sqlite":
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC); whole seconds, divided as integers.
        return cast(cast(func.strftime("%s", Span.start_time), Integer) // divisor, Integer)
    # floor first: a cast to bigint rounds, which would put 12:59:59.7 in the next hour.
    return cast(cast(func.floor(func.extract("epoch", Span.start_time)), BigInteger) // divisor, BigInteger)


def bucket_numbers(filters: StatsFilters, width: int) -> range:
    """Every bucket the range touches, first and last possibly partial."""
    first = int(filters.start.timestamp()) // width
    last = (math.ceil(filters.end.timestamp()) - 1) // width
    return range(first, last + 1)


def bucket_start(number: int, width: int) -> datetime:
    return datetime.fromtimestamp(number * width, UTC)
