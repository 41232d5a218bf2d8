"""Reading the `limits:` section of config.yaml, with file:line problems."""

from __future__ import annotations

from engine.durations import parse_duration
from engine.limits import DEFAULTS, ChannelLimits, KindLimits, Limits, parse_cap, parse_rate, parse_window
from engine.yamlfile import Lines, did_you_mean

KIND_KEYS = ("per_customer", "quiet_hours")
CHANNEL_KEYS = ("per_customer", "rate")
TOP_KEYS = ("marketing", "service", "channels", "max_deferral")


def read_limits(raw, lines: Lines, problems: list, channel_names: list[str]) -> Limits:
    """Missing keys take the safe defaults (marketing 1/1d and 3/7d, quiet 21:00-09:00;
    service 6/1d, quiet 23:00-07:00); `quiet_hours: null` or `per_customer: []` turns
    one off explicitly."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        problems.append(lines.problem(("limits",), "must be a mapping with marketing, service, channels"))
        raw = {}
    for key in raw:
        if key not in TOP_KEYS:
            problems.append(lines.problem(("limits", key), f"unknown key {key!r}{did_you_mean(key, TOP_KEYS)}"))
    limits = Limits(
        marketing=_kind(raw.get("marketing"), "marketing", lines, problems),
        service=_kind(raw.get("service"), "service", lines, problems),
        channels=_channels(raw.get("channels"), lines, problems, channel_names),
    )
    if "max_deferral" in raw:
        try:
            limits.max_deferral = parse_duration(raw["max_deferral"])
        except ValueError as exc:
            problems.append(lines.problem(("limits", "max_deferral"), str(exc)))
    return limits


def _kind(raw, kind: str, lines: Lines, problems: list) -> KindLimits:
    path = ("limits", kind)
    settings = dict(DEFAULTS[kind])
    if raw is not None and not isinstance(raw, dict):
        problems.append(lines.problem(path, "must be a mapping with per_customer and quiet_hours"))
        raw = None
    for key, value in (raw or {}).items():
        if key not in KIND_KEYS:
            problems.append(lines.problem(path + (key,), f"unknown key {key!r}{did_you_mean(key, KIND_KEYS)}"))
        else:
            settings[key] = value
    out = KindLimits(per_customer=_caps(settings["per_customer"], path + ("per_customer",), lines, problems))
    if settings["quiet_hours"] is not None:
        try:
            out.quiet_hours = parse_window(settings["quiet_hours"])
        except ValueError as exc:
            problems.append(lines.problem(path + ("quiet_hours",), str(exc)))
    return out


def _caps(raw, path: tuple, lines: Lines, problems: list) -> tuple:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(lines.problem(path, 'must be a list of caps, such as ["1/1d", "3/7d"]'))
        return ()
    caps = []
    for i, text in enumerate(raw):
        try:
            caps.append(parse_cap(text))
        except ValueError as exc:
            problems.append(lines.problem(path + (i,), str(exc)))
    return tuple(caps)


def _channels(raw, lines: Lines, problems: list, channel_names: list[str]) -> dict[str, ChannelLimits]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(lines.problem(("limits", "channels"), "must map channel names to {per_customer, rate}"))
        return {}
    out = {}
    for name, settings in raw.items():
        path = ("limits", "channels", name)
        if name not in channel_names:
            problems.append(lines.problem(path, f"unknown channel {name!r}; channels: {', '.join(channel_names)}"
                                                f"{did_you_mean(name, channel_names)}"))
            continue
        if not isinstance(settings, dict):
            problems.append(lines.problem(path, 'must be a mapping, such as {per_customer: ["2/1d"], rate: 50/s}'))
            continue
        limits = ChannelLimits()
        for key, value in settings.items():
            if key == "per_customer":
                limits.per_customer = _caps(value, path + (key,), lines, problems)
            elif key == "rate":
                try:
                    limits.rate = parse_rate(value)
                except ValueError as exc:
                    problems.append(lines.problem(path + (key,), str(exc)))
            else:
                problems.append(lines.problem(path + (key,), f"unknown key {key!r}{did_you_mean(key, CHANNEL_KEYS)}"))
        out[str(name)] = limits
    return out
