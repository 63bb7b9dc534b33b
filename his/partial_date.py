"""Dates of birth that may be known only to the year, or to the month.

Elderly patients often know only their year of birth. A :class:`PartialDate` keeps what is
known; ages are computed as if the unknown parts were the last possible ones, so nobody is
made older than they may be (which matters for the under-6 rules of BHYT and priority
queues).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

from flask_babel import lazy_gettext as _l

from his.errors import InvalidValue
from his.localtime import local_today

MIN_YEAR = 1880

# re.ASCII: ``\d`` is 0-9 only, not every script's digits.
_ISO = re.compile(r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2}))?)?", re.ASCII)
_DISPLAY = re.compile(r"(?:(?:(?P<day>\d{1,2})/)?(?P<month>\d{1,2})/)?(?P<year>\d{4})", re.ASCII)


@dataclass(frozen=True, order=True)
class PartialDate:
    """A calendar date of which the month, or the month and day, may be unknown.

    Construction checks that the known parts make a real date (no 31/02); :meth:`parse`
    also rejects years before 1880 and dates in the future.

    Ordering compares year, then month, then day. A date known to the month and one known
    only to the year, in the same year, cannot be ordered (Python raises ``TypeError``):
    sort lists of mixed precision with :meth:`sort_key`.
    """

    year: int
    month: int | None = None
    day: int | None = None

    def __post_init__(self) -> None:
        if self.month is None:
            if self.day is not None:
                raise InvalidValue(_l("A day of birth needs a month of birth."))
            return
        if not 1 <= self.month <= 12:
            raise InvalidValue(
                _l("Month %(month)s does not exist: months go from 1 to 12.", month=self.month)
            )
        if self.day is None:
            return
        days = calendar.monthrange(self.year, self.month)[1]
        if not 1 <= self.day <= days:
            raise InvalidValue(
                _l(
                    "Day %(day)s does not exist in %(month_year)s: that month has %(days)s days.",
                    day=self.day,
                    month_year=f"{self.month:02d}/{self.year:04d}",
                    days=days,
                )
            )

    @classmethod
    def parse(cls, text: str, *, today: dt.date | None = None) -> PartialDate:
        """Reads ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD`` (API) or ``dd/mm/yyyy``, ``mm/yyyy``,
        ``yyyy`` (display; ``d/m/yyyy`` too). ``today`` defaults to today in Vietnam."""
        value = " ".join(text.split())
        if not value:
            raise InvalidValue(_l("The date is empty."))
        match = _ISO.fullmatch(value) or _DISPLAY.fullmatch(value)
        if match is None:
            raise InvalidValue(
                _l(
                    "“%(value)s” is not a date: write it as dd/mm/yyyy, mm/yyyy or yyyy.",
                    value=value,
                )
            )
        parts = match.groupdict()
        date = cls(
            int(parts["year"]),
            int(parts["month"]) if parts["month"] else None,
            int(parts["day"]) if parts["day"] else None,
        )
        return date.checked(today=today)

    def checked(self, *, today: dt.date | None = None) -> PartialDate:
        """This date, if it is a plausible date of birth: from 1880, not in the future."""
        if self.year < MIN_YEAR:
            raise InvalidValue(
                _l(
                    "The year %(year)s is too early: dates before %(min_year)s are not accepted.",
                    year=self.year,
                    min_year=MIN_YEAR,
                )
            )
        today = today or local_today()
        if (self.year, self.month or 1, self.day or 1) > (today.year, today.month, today.day):
            raise InvalidValue(
                _l(
                    "The date %(date)s is in the future (today is %(today)s).",
                    date=self.display(),
                    today=today.strftime("%d/%m/%Y"),
                )
            )
        return self

    def iso(self) -> str:
        """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``."""
        text = f"{self.year:04d}"
        if self.month is not None:
            text += f"-{self.month:02d}"
            if self.day is not None:
                text += f"-{self.day:02d}"
        return text

    def display(self) -> str:
        """``dd/mm/yyyy``, ``mm/yyyy`` or ``yyyy``."""
        text = f"{self.year:04d}"
        if self.month is not None:
            text = f"{self.month:02d}/{text}"
            if self.day is not None:
                text = f"{self.day:02d}/{text}"
        return text

    def as_date(self) -> dt.date | None:
        """The date, when day and month are known."""
        if self.month is None or self.day is None:
            return None
        return dt.date(self.year, self.month, self.day)

    def earliest(self) -> dt.date:
        """The first day this date may be."""
        return dt.date(self.year, self.month or 1, self.day or 1)

    def latest(self) -> dt.date:
        """The last day this date may be."""
        month = self.month or 12
        day = self.day or calendar.monthrange(self.year, month)[1]
        return dt.date(self.year, month, day)

    def sort_key(self) -> tuple[int, int, int]:
        """Orders dates of any precision; unknown parts sort first."""
        return self.year, self.month or 0, self.day or 0

    def _check_on(self, on: dt.date) -> dt.date:
        """The latest possible birth date; rejects a date certainly before it."""
        if on < self.earliest():
            raise InvalidValue(
                _l(
                    "The date %(date)s is before the date of birth %(birth)s.",
                    date=on.strftime("%d/%m/%Y"),
                    birth=self.display(),
                )
            )
        return self.latest()

    def age_on(self, on: dt.date) -> int:
        """Completed years on ``on``, the unknown month and day taken as the last possible.

        Year-only 2020 is 5 on 2026-03-01 (the person may be born on 31/12/2020). Someone
        born on 29 February completes a year on 1 March in common years.
        """
        born = self._check_on(on)
        years = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
        return max(years, 0)

    def months_on(self, on: dt.date) -> int:
        """Completed months on ``on``, with the same rule as :meth:`age_on`.

        A month is completed on the same day number of a later month; born on the 31st,
        the month is completed on the 1st of the month after next when the next is shorter.
        """
        born = self._check_on(on)
        months = (on.year - born.year) * 12 + on.month - born.month - (on.day < born.day)
        return max(months, 0)
