"""config.yaml `profile:`: the member tiers and RFM bands that `customer.tier` and
`customer.rfm` are computed from."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.config.spec import ABSENT, TEXT_OR_NUMBER, Key, ListOf, Section, Walk, amount, kind, read_section, whole


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


@kind("bands", {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 4, "maxItems": 4})
def BANDS(value) -> tuple:
    """Four non-negative numbers in ascending order (the limits of the five RFM scores)."""
    if not (isinstance(value, list) and len(value) == 4 and value == sorted(value)
            and all(not isinstance(v, bool) and isinstance(v, (int, float)) and v >= 0 for v in value)):
        raise ValueError("must be four ascending numbers (the limits of the five scores), such as [30, 90, 180, 365]")
    return tuple(value)


TIER = Section((
    Key("name", TEXT_OR_NUMBER, "The tier's name, as customer.tier reads it.", required=True),
    Key("min_spent", amount(0), "Money spent at least.", "must be an amount, such as 2000"),
    Key("min_orders", whole(0), "Paid orders at least.", "must be a whole number of paid orders, such as 3"),
), "each tier needs a name, and min_spent and/or min_orders", missing="each tier needs a name, and min_spent and/or "
   "min_orders", unknown="unknown key {key!r}{hint}; a tier has name, min_spent, min_orders",
    build=lambda values: Tier(values.get("name", ""), values.get("min_spent", 0.0), values.get("min_orders", 0)))


def _profile(values: dict) -> ProfileConfig:
    config = ProfileConfig(**values.get("rfm", {}))
    if values.get("tiers"):
        config.tiers = values["tiers"]
    return config


PROFILE = Section((
    Key("tiers", ListOf(TIER, "must be a list of tiers, highest first, such as [{name: 金卡, min_spent: 2000}, "
                              "{name: 会员}]", non_empty=True), "Member tiers, highest first."),
    Key("rfm", Section((
        Key("recency_days", BANDS, "Days since the last order: score 5 within the first, 1 beyond the last."),
        Key("frequency", BANDS, "Paid orders: score 1 below the first, 5 at or above the last."),
        Key("monetary", BANDS, "Money spent: score 1 below the first, 5 at or above the last."),
    ), "must be a mapping with recency_days, frequency, monetary", "The RFM score bands, four limits each."),
        null=ABSENT),
), "must be a mapping with tiers and rfm", "Member tiers and RFM bands, read by customer.tier and customer.rfm.",
    build=_profile)


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
    return read_section(PROFILE, raw, ("profile",), Walk(lines, problems))
