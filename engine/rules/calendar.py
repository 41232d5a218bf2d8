"""Calendar and state triggers: rules started by a moment, not by an event.

    when: {idle: 60d}                                  # 60 x 24 h after the customer's latest order
    when: {birthday: -3d, at: "10:00"}                 # three days before the birthday, 10:00 local
    when: {holiday: spring_festival, offset: -7d, at: "10:00"}
    when: {date: "11-11", at: "14:00"}                 # every year; or "2026-11-11" once
    when: {cron: "0 10 * * 1"}                         # every Monday 10:00 (shop time; standard cron:
                                                       # 0 or 7 = Sunday, */2 = Sun, Tue, Thu, Sat)

A holiday's date is the festival day itself (spring_festival is lunar new year's day:
2026-02-17), from the lunardate library for the lunar festivals and chinese_calendar for
the solar term of Qingming and the statutory days off (`day: first_day_off` takes the
first day of the statutory break instead). The sweeps (engine.sweeps) ask this module
which moments fall in a span of time."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from engine.durations import parse_duration

KINDS = ("idle", "birthday", "holiday", "date", "cron")
KEYS = KINDS + ("at", "offset", "day")
LUNAR = {  # (lunar month, day); new year's eve is the day before spring_festival
    "spring_festival": (1, 1), "lantern_festival": (1, 15), "dragon_boat_festival": (5, 5),
    "qixi": (7, 7), "mid_autumn_festival": (8, 15), "double_ninth_festival": (9, 9), "laba_festival": (12, 8),
}
SOLAR = {"new_years_day": (1, 1), "valentines_day": (2, 14), "womens_day": (3, 8), "labour_day": (5, 1),
         "childrens_day": (6, 1), "national_day": (10, 1), "singles_day": (11, 11), "double_twelve": (12, 12),
         "christmas": (12, 25)}
HOLIDAYS = tuple(sorted([*LUNAR, *SOLAR, "new_years_eve", "tomb_sweeping_day"]))
STATUTORY = {  # chinese_calendar's names for the statutory breaks
    "new_years_day": "New Year's Day", "spring_festival": "Spring Festival", "tomb_sweeping_day": "Tomb-sweeping Day",
    "labour_day": "Labour Day", "dragon_boat_festival": "Dragon Boat Festival", "national_day": "National Day",
    "mid_autumn_festival": "Mid-autumn Festival",
}
# The festivals' Chinese names, accepted as they are: {holiday: 中秋节} is mid_autumn_festival.
CHINESE_NAMES = {
    "春节": "spring_festival", "除夕": "new_years_eve", "元宵节": "lantern_festival", "元宵": "lantern_festival",
    "清明节": "tomb_sweeping_day", "清明": "tomb_sweeping_day", "端午节": "dragon_boat_festival",
    "端午": "dragon_boat_festival", "七夕": "qixi", "七夕节": "qixi", "中秋节": "mid_autumn_festival",
    "中秋": "mid_autumn_festival", "重阳节": "double_ninth_festival", "重阳": "double_ninth_festival",
    "腊八节": "laba_festival", "腊八": "laba_festival", "元旦": "new_years_day", "情人节": "valentines_day",
    "妇女节": "womens_day", "三八节": "womens_day", "劳动节": "labour_day", "五一": "labour_day",
    "儿童节": "childrens_day", "六一": "childrens_day", "国庆节": "national_day", "国庆": "national_day",
    "双十一": "singles_day", "双11": "singles_day", "光棍节": "singles_day", "双十二": "double_twelve",
    "双12": "double_twelve", "圣诞节": "christmas", "圣诞": "christmas",
}
# Other names a marketer may write for a festival: not accepted (one spelling in the files),
# but the suggestion goes by meaning, not by letters (double_eleven is not double_twelve).
SYNONYMS = {
    "double_eleven": "singles_day", "double11": "singles_day", "d11": "singles_day", "11_11": "singles_day",
    "eleven_eleven": "singles_day", "double_12": "double_twelve", "d12": "double_twelve",
    "chinese_new_year": "spring_festival", "lunar_new_year": "spring_festival", "new_year": "new_years_day",
    "cny": "spring_festival", "mid_autumn": "mid_autumn_festival", "moon_festival": "mid_autumn_festival",
    "dragon_boat": "dragon_boat_festival", "qingming": "tomb_sweeping_day", "lantern": "lantern_festival",
    "labor_day": "labour_day", "may_day": "labour_day", "children_day": "childrens_day",
    "women_day": "womens_day", "chinese_valentines_day": "qixi", "double_seventh": "qixi",
    "double_ninth": "double_ninth_festival", "chongyang": "double_ninth_festival", "laba": "laba_festival",
    "xmas": "christmas", "valentine": "valentines_day",
}
_DATE = re.compile(r"^(?:(\d{4})-)?(\d{1,2})-(\d{1,2})$")
_AT = re.compile(r"^(\d{1,2}):(\d{2})$")


class TriggerError(ValueError):
    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
        self.message = message


@dataclass(frozen=True)
class Trigger:
    kind: str  # one of KINDS
    idle: timedelta | None = None
    offset: timedelta = timedelta(0)
    at: time = time(10, 0)
    holiday: str | None = None
    first_day_off: bool = False
    month_day: tuple[int | None, int, int] | None = None  # (year or None, month, day)
    cron: str | None = None  # a standard five-field cron expression (read by cronsim)
    text: str = ""

    @property
    def label(self) -> str:
        """The event type a message of this trigger shows (`event.type` in templates)."""
        return f"sweep.{self.kind}"

    def moments(self, start: datetime, end: datetime, tz: ZoneInfo) -> list[tuple[datetime, date]]:
        """The trigger's moments in (start, end], each with the local day it belongs to
        (for birthday: the day of the moment; the birthday is that day minus the offset).
        Not for idle, whose moments depend on each customer."""
        if self.kind == "cron":
            out = []
            for t in CronSim(self.cron, start.astimezone(tz)):  # the times after start, in shop time
                if t > end:
                    return out
                out.append((t, t.date()))
        out = []
        first = start.astimezone(tz).date() - timedelta(days=abs(self.offset.days) + 2)
        last = end.astimezone(tz).date() + timedelta(days=abs(self.offset.days) + 2)
        if self.kind in ("date", "holiday"):  # one anchor a year: no need to walk the days
            for year in range(first.year, last.year + 1):
                anchor = self.anchor(year)
                if anchor is not None and first <= anchor <= last:
                    moment = _local(anchor + self.offset, self.at, tz)
                    if start < moment <= end:
                        out.append((moment, anchor + self.offset))
            return sorted(set(out))
        day = first
        while day <= last:
            for moment_day in self._days_for(day):
                moment = _local(moment_day, self.at, tz)
                if start < moment <= end:
                    out.append((moment, moment_day))
            day += timedelta(days=1)
        return sorted(set(out))

    def _days_for(self, day: date) -> list[date]:
        """Moment days whose anchor (birthday, holiday, date) is `day`... for the calendar
        kinds the anchor is computed per year; for birthday every day is a moment day."""
        if self.kind == "birthday":
            return [day]
        anchor = self.anchor(day.year)
        if anchor is None or anchor != day:
            return []
        return [day + self.offset]

    def anchor(self, year: int) -> date | None:
        """The holiday's or date's day in `year` (None when it has none that year)."""
        if self.kind == "date":
            fixed, month, dd = self.month_day
            if fixed is not None and fixed != year:
                return None
            try:
                return date(year, month, dd)
            except ValueError:  # 02-29 in a common year
                return None
        if self.kind == "holiday":
            return holiday_date(self.holiday, year, self.first_day_off)
        return None

    def birthdays_on(self, moment_day: date) -> list[str]:
        """Birthday month-days (MM-DD) celebrated by a moment on `moment_day`; a 02-29
        birthday is celebrated on 02-28 in common years."""
        birthday = moment_day - self.offset
        days = [f"{birthday.month:02d}-{birthday.day:02d}"]
        if birthday.month == 2 and birthday.day == 28 and not _leap(birthday.year):
            days.append("02-29")
        return days


def days_off_known_until() -> int:
    """The last year whose statutory days off the installed chinesecalendar knows (China's
    State Council publishes each year's schedule late in the year before)."""
    import chinese_calendar  # noqa: PLC0415 - loaded only when a rule needs it

    return max(d.year for d in chinese_calendar.holidays)


@functools.lru_cache(maxsize=4096)
def holiday_date(name: str, year: int, first_day_off: bool = False) -> date | None:
    """The festival day of `name` in `year` (or the first statutory day off of its break)."""
    if first_day_off:
        import chinese_calendar  # noqa: PLC0415 - loaded only when a rule needs it

        festival = holiday_date(name, year)
        days = [d for d, n in chinese_calendar.holidays.items()
                if n == STATUTORY[name] and abs((d - festival).days) <= 10]
        return min(days) if days else None  # None: the library has no schedule for that year yet
    if name in SOLAR:
        month, day = SOLAR[name]
        return date(year, month, day)
    if name == "tomb_sweeping_day":
        import chinese_calendar  # noqa: PLC0415

        terms = chinese_calendar.get_solar_terms(date(year, 4, 1), date(year, 4, 10))
        return terms[0][0] if terms else None
    from lunardate import LunarDate  # noqa: PLC0415

    if name == "new_years_eve":  # the eve belongs to the lunar year ending: in the Gregorian year it falls in
        eve = LunarDate(year, 1, 1).to_solar_date() - timedelta(days=1)
        return eve if eve.year == year else LunarDate(year + 1, 1, 1).to_solar_date() - timedelta(days=1)
    month, day = LUNAR[name]
    return LunarDate(year, month, day).to_solar_date()


def parse_trigger(raw: dict, tz: ZoneInfo) -> Trigger:
    """A `when:` mapping -> Trigger; raises TriggerError(key, message) with the fix."""
    kinds = [k for k in raw if k in KINDS]
    for key in raw:
        if key not in KEYS:
            raise TriggerError(str(key), f"unknown key {key!r} in when; a calendar trigger has one of "
                                         f"{', '.join(KINDS)}, and at, offset, day")
    if len(kinds) != 1:
        raise TriggerError("", f"write exactly one of {', '.join(KINDS)} (for example: when: {{idle: 60d}}); "
                               + (f"found {', '.join(kinds)}" if kinds else "or an event type such as order.paid"))
    kind = kinds[0]
    if kind != "holiday" and "day" in raw:
        raise TriggerError("day", "day: first_day_off is for holidays only")
    if kind in ("idle", "cron"):
        for key in ("at", "offset"):
            if key in raw:
                raise TriggerError(key, _NOT_FOR[kind].format(key=key, value=raw[kind]))
        return _idle(raw["idle"]) if kind == "idle" else _cron(raw["cron"], tz)
    at = _parse_at(raw.get("at", "10:00"))
    offset = _signed_days(raw["offset"], "offset") if "offset" in raw else timedelta(0)
    if kind == "birthday":
        return _birthday(raw, at)
    if kind == "holiday":
        return _holiday(raw, at, offset)
    return _date(raw["date"], at, offset)


_NOT_FOR = {
    "idle": "{key} does not apply to idle (it fires {value} after the latest order, within send windows; use the "
            "rule's window: for the hours)",
    "cron": "{key} does not apply to cron; the cron expression gives the times",
}


def _idle(value) -> Trigger:
    try:
        idle = parse_duration(value)
    except ValueError:
        raise TriggerError("idle", f"bad duration {value!r}; write days such as 60d") from None
    if idle < timedelta(days=1):
        raise TriggerError("idle", f"idle {value} is less than a day; write days such as 60d")
    return Trigger("idle", idle=idle, text=f"idle {value}")


def _birthday(raw: dict, at: time) -> Trigger:
    value = raw["birthday"]
    if "offset" in raw:
        raise TriggerError("offset", "write the offset as the birthday's value: birthday: -3d")
    offset = _signed_days(value if value not in (None, "", 0) else "0d", "birthday")
    return Trigger("birthday", offset=offset, at=at, text=f"birthday {value}")


def _holiday(raw: dict, at: time, offset: timedelta) -> Trigger:
    value = CHINESE_NAMES.get(str(raw["holiday"]).strip(), raw["holiday"])
    if value not in HOLIDAYS:
        raise TriggerError("holiday", f"unknown holiday {value!r}{_meant_holiday(value)} (known: "
                                      f"{', '.join(HOLIDAYS)}, or their Chinese names such as 中秋节)")
    first = raw.get("day", "festival")
    if first not in ("festival", "first_day_off"):
        raise TriggerError("day", f"day {first!r}: write festival (the festival day itself, the default) "
                                  "or first_day_off (the first day of the statutory break)")
    if first == "first_day_off" and value not in STATUTORY:
        raise TriggerError("day", f"{value} has no statutory break; days off exist for {', '.join(STATUTORY)}")
    return Trigger("holiday", offset=offset, at=at, holiday=value, first_day_off=first == "first_day_off",
                   text=f"holiday {value}")


def _date(value, at: time, offset: timedelta) -> Trigger:
    match = _DATE.match(str(value).strip())
    if not match:
        raise TriggerError("date", f"bad date {value!r}; write MM-DD for every year (11-11) or YYYY-MM-DD once")
    year, month, day = match.groups()
    try:
        date(int(year or 2024), int(month), int(day))
    except ValueError:
        raise TriggerError("date", f"{value!r} is not a day of the calendar") from None
    return Trigger("date", offset=offset, at=at, month_day=(int(year) if year else None, int(month), int(day)),
                   text=f"date {value}")


def _cron(value, tz: ZoneInfo) -> Trigger:
    expression = " ".join(str(value).split())
    try:
        CronSim(expression, datetime(2026, 1, 1, tzinfo=tz))
    except CronSimError as exc:
        raise TriggerError("cron", f"bad cron expression {value!r} ({exc}); write five fields: "
                                   "minute hour day month weekday, such as '0 10 * * 1' (Monday 10:00)") from None
    return Trigger("cron", cron=expression, text=f"cron {value}")


def _meant_holiday(value) -> str:
    """The festival a name means: a synonym (double_eleven -> singles_day), else a close
    spelling (mid_autum_festival), else nothing."""
    from engine.config.yamlfile import did_you_mean  # noqa: PLC0415

    key = re.sub(r"[\s\-.']+", "_", str(value).strip().lower())
    if key in SYNONYMS:
        return f"; did you mean {SYNONYMS[key]!r}?"
    return did_you_mean(key, HOLIDAYS)


def _parse_at(value) -> time:
    match = _AT.match(str(value).strip())
    if match and int(match.group(1)) < 24 and int(match.group(2)) < 60:
        return time(int(match.group(1)), int(match.group(2)))
    raise TriggerError("at", f"bad time of day {value!r}; write HH:MM in the shop's time zone, such as 10:00")


def _signed_days(value, key: str) -> timedelta:
    text = str(value).strip()
    sign = -1 if text.startswith("-") else 1
    try:
        span = parse_duration(text.lstrip("+-"))
    except ValueError:
        raise TriggerError(key, f"bad offset {value!r}; write whole days such as -3d or 7d") from None
    if span.seconds or span.microseconds:
        raise TriggerError(key, f"bad offset {value!r}; write whole days such as -3d (the time of day is at:)")
    return sign * span


def _local(day: date, at: time, tz: ZoneInfo) -> datetime:
    """`at` on `day` in `tz`, as an aware time (a time skipped by DST moves forward)."""
    naive = datetime.combine(day, at)
    local = naive.replace(tzinfo=tz)
    back = local.astimezone(ZoneInfo("UTC")).astimezone(tz)
    if back.replace(tzinfo=None) != naive:  # in a DST gap: the first minute after it
        local = (naive + timedelta(hours=1)).replace(tzinfo=tz)
    return local


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
