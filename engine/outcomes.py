"""The decision vocabulary: outcomes and the stable reason codes (a public contract,
listed in the README; a test keeps the two in sync)."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What became of a message, as the decision log and the dry-run record it."""

    SENT = "sent"
    DEFERRED = "deferred"
    CANCELLED = "cancelled"
    SUPPRESSED = "suppressed"
    EXPIRED = "expired"
    FAILED = "failed"


class State(StrEnum):
    """Where a scheduled message is: waiting (pending), taken by a dispatcher (claimed),
    handed to its channel (sending), or finished with one of the final outcomes."""

    PENDING = "pending"
    CLAIMED = "claimed"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"
    SUPPRESSED = "suppressed"
    EXPIRED = "expired"
    FAILED = "failed"


class Reason(StrEnum):
    """The stable reason codes (README, "Reason codes"); REASONS below says what each means."""

    UNLESS = "unless"
    RULE_UNAVAILABLE = "rule_unavailable"
    RULE_REMOVED = "rule_removed"
    DUPLICATE = "duplicate"
    CAP = "cap"
    COOLDOWN = "cooldown"
    UNSUBSCRIBED = "unsubscribed"
    QUIET_HOURS = "quiet_hours"
    WINDOW = "window"
    EXPIRED = "expired"
    TEMPLATE_ERROR = "template_error"
    EXPRESSION_ERROR = "expression_error"
    NO_CONTACT = "no_contact"
    ENGINE_ERROR = "engine_error"
    CHANNEL_UNAVAILABLE = "channel_unavailable"
    CHANNEL_ERROR = "channel_error"
    RETRY = "retry"


OUTCOMES = tuple(Outcome)

# reason code -> (the outcomes it comes with, what it means for a marketer)
REASONS: dict[Reason, tuple[tuple[Outcome, ...], str]] = {
    Reason.UNLESS: ((Outcome.CANCELLED,),
        "an `unless` condition was true at send time (e.g. the order was paid meanwhile)"),
    Reason.RULE_UNAVAILABLE: ((Outcome.CANCELLED,),
        "the rule is no longer loaded (removed, disabled or broken)"),
    Reason.RULE_REMOVED: ((Outcome.CANCELLED,),
        "the daemon reloaded the rules and this rule was removed or disabled: what it had scheduled is cancelled"),
    Reason.DUPLICATE: ((Outcome.SUPPRESSED,),
        "the rule already fired for this event / order / customer (`once_per`)"),
    Reason.CAP: ((Outcome.SUPPRESSED, Outcome.DEFERRED),
        "a frequency cap was reached (deferred with `on_limit: defer`); the detail names the cap and the sends "
        "that count"),
    Reason.COOLDOWN: ((Outcome.SUPPRESSED,),
        "the rule sent to this customer within its `cooldown`"),
    Reason.UNSUBSCRIBED: ((Outcome.SUPPRESSED,),
        "the customer unsubscribed from marketing on this channel (or all channels)"),
    Reason.QUIET_HOURS: ((Outcome.DEFERRED,),
        "inside quiet hours in the customer's time zone; the detail gives the new time"),
    Reason.WINDOW: ((Outcome.DEFERRED, Outcome.SUPPRESSED),
        "outside the rule's send `window` (suppressed when the window lies wholly inside quiet hours)"),
    Reason.EXPIRED: ((Outcome.EXPIRED,),
        "could not be sent within `expires` of its due time (or a deferral would pass it)"),
    Reason.TEMPLATE_ERROR: ((Outcome.FAILED,),
        "the template could not be rendered (e.g. a missing value); that message only"),
    Reason.EXPRESSION_ERROR: ((Outcome.FAILED,),
        "an `if`, `unless` or `send_at` expression could not be evaluated"),
    Reason.NO_CONTACT: ((Outcome.FAILED,),
        "the customer has no address for the channel (no phone for SMS, no email)"),
    Reason.ENGINE_ERROR: ((Outcome.FAILED,),
        "the engine could not handle this message (unexpected data or a bug); the detail gives the error, the "
        "daemon's log the traceback"),
    Reason.CHANNEL_UNAVAILABLE: ((Outcome.FAILED,),
        "the message's channel is no longer in config.yaml"),
    Reason.CHANNEL_ERROR: ((Outcome.FAILED,),
        "the channel reported a delivery failure: a permanent one (invalid number, rejected template), or a "
        "transient one on the last of `dispatch.retry.attempts`"),
    Reason.RETRY: ((Outcome.DEFERRED,),
        "a transient channel failure (timeout, 5xx, provider rate limit) or a channel paused after repeated "
        "failures; the detail gives the error, the attempt and the next try"),
}
