"""Vietnam's clock: times are stored in UTC and shown, and days counted, in Asia/Ho_Chi_Minh."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def local_now() -> dt.datetime:
    return dt.datetime.now(VN_TZ)


def local_today() -> dt.date:
    """The working day: queue numbers and visit codes restart with it."""
    return local_now().date()


def local_date(moment: dt.datetime) -> dt.date:
    return moment.astimezone(VN_TZ).date()


def local_day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The instants a local day starts and the next one starts: a day's rows in UTC columns."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=VN_TZ)
    return start, start + dt.timedelta(days=1)
