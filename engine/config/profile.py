"""config.yaml `profile:`: the member tiers and RFM bands that `customer.tier` and
`customer.rfm` are computed from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Tier:
    name: str
    min_spent: float = 0.0
    min_orders: int = 0


@dataclass
class ProfileConfig:
    """Member tiers (highest first; the first a customer reaches is theirs) and RFM bands:
    recency in days since the last order (score 5 within the first band .. 1 beyond the
    last), frequency in paid orders and monetary in money spent (score 1 below the first
    threshold .. 5 at or above the last)."""

    tiers: list[Tier] = field(default_factory=lambda: [Tier("gold", 2000), Tier("silver", 500), Tier("member")])
    recency_days: tuple[int, ...] = (30, 90, 180, 365)
    frequency: tuple[int, ...] = (2, 3, 5, 10)
    monetary: tuple[float, ...] = (100.0, 500.0, 1000.0, 3000.0)

    def tier(self, orders: int, spent: float) -> str | None:
        for tier in self.tiers:
            if spent >= tier.min_spent and orders >= tier.min_orders:
                return tier.name
        return None

    def rfm(self, days_since_last_order: int | None, orders: int, spent: float) -> dict[str, int]:
        """Scores 1..5 (0 for recency and frequency when the customer never ordered)."""
        if days_since_last_order is None:
            recency = 0
        else:
            recency = 1
            for score, limit in zip((5, 4, 3, 2), self.recency_days):
                if days_since_last_order <= limit:
                    recency = score
                    break
        frequency = 0 if orders == 0 else 1 + sum(1 for t in self.frequency if orders >= t)
        monetary = 1 + sum(1 for t in self.monetary if spent >= t)
        return {"recency": recency, "frequency": frequency, "monetary": monetary}


DEFAULT_PROFILE = ProfileConfig()


PROFILE_KEYS = ("tiers", "rfm")
RFM_KEYS = ("recency_days", "frequency", "monetary")


def read_profile(raw, lines, problems: list) -> ProfileConfig:
    """The `profile:` section of config.yaml: member tiers and RFM bands, e.g.

        profile:
          tiers:                       # highest first: the first one reached is the tier
            - {name: 金卡, min_spent: 2000}
            - {name: 银卡, min_spent: 500, min_orders: 2}
            - {name: 会员}
          rfm:
            recency_days: [30, 90, 180, 365]
            frequency: [2, 3, 5, 10]
            monetary: [100, 500, 1000, 3000]
    """
    from engine.config.yamlfile import did_you_mean  # noqa: PLC0415 - keep this module light

    config = ProfileConfig()
    if raw is None:
        return config
    if not isinstance(raw, dict):
        problems.append(lines.problem(("profile",), "must be a mapping with tiers and rfm"))
        return config
    for key in raw:
        if key not in PROFILE_KEYS:
            problems.append(lines.problem(("profile", key), f"unknown key {key!r}{did_you_mean(key, PROFILE_KEYS)}"))
    if "tiers" in raw:
        tiers = _tiers(raw["tiers"], lines, problems)
        if tiers is not None:
            config.tiers = tiers
    rfm = raw.get("rfm")
    if rfm is not None and not isinstance(rfm, dict):
        problems.append(lines.problem(("profile", "rfm"), "must be a mapping with recency_days, frequency, monetary"))
    elif rfm:
        for key, value in rfm.items():
            path = ("profile", "rfm", key)
            if key not in RFM_KEYS:
                problems.append(lines.problem(path, f"unknown key {key!r}{did_you_mean(key, RFM_KEYS)}"))
                continue
            if not _four_ascending(value):
                problems.append(lines.problem(path, "must be four ascending numbers (the limits of the five scores), "
                                                    "such as [30, 90, 180, 365]"))
                continue
            setattr(config, key, tuple(value))
    return config


def _tiers(raw, lines, problems: list) -> list[Tier] | None:
    path = ("profile", "tiers")
    if not isinstance(raw, list) or not raw:
        problems.append(lines.problem(path, "must be a list of tiers, highest first, such as "
                                            "[{name: 金卡, min_spent: 2000}, {name: 会员}]"))
        return None
    tiers = []
    for i, item in enumerate(raw):
        where = path + (i,)
        if not isinstance(item, dict) or not item.get("name"):
            problems.append(lines.problem(where, "each tier needs a name, and min_spent and/or min_orders"))
            continue
        unknown = [k for k in item if k not in ("name", "min_spent", "min_orders")]
        for key in unknown:
            problems.append(lines.problem(where + (key,), f"unknown key {key!r}; a tier has name, min_spent, "
                                                          "min_orders"))
        spent, orders = item.get("min_spent", 0), item.get("min_orders", 0)
        if isinstance(spent, bool) or not isinstance(spent, (int, float)) or spent < 0:
            problems.append(lines.problem(where + ("min_spent",), "must be an amount, such as 2000"))
            continue
        if isinstance(orders, bool) or not isinstance(orders, int) or orders < 0:
            problems.append(lines.problem(where + ("min_orders",), "must be a whole number of paid orders, such as 3"))
            continue
        tiers.append(Tier(str(item["name"]), float(spent), orders))
    return tiers


def _four_ascending(value) -> bool:
    """Four non-negative numbers in ascending order (the limits of the five RFM scores)."""
    return (isinstance(value, list) and len(value) == 4
            and all(not isinstance(v, bool) and isinstance(v, (int, float)) and v >= 0 for v in value)
            and value == sorted(value))
