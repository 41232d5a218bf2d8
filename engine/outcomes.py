"""The decision vocabulary: outcomes and the stable reason codes (a public contract,
listed in the README; a test keeps the two in sync)."""

from __future__ import annotations

OUTCOMES = ("sent", "deferred", "cancelled", "suppressed", "expired", "failed")

# reason code -> (the outcomes it comes with, what it means for a marketer)
REASONS: dict[str, tuple[tuple[str, ...], str]] = {
    "unless": (("cancelled",), "an `unless` condition was true at send time (e.g. the order was paid meanwhile)"),
    "rule_unavailable": (("cancelled",), "the rule is no longer loaded (removed, disabled or broken)"),
    "rule_removed": (("cancelled",), "the daemon reloaded the rules and this rule was removed or disabled: what it "
                                     "had scheduled is cancelled"),
    "duplicate": (("suppressed",), "the rule already fired for this event / order / customer (`once_per`)"),
    "cap": (("suppressed", "deferred"), "a frequency cap was reached (deferred with `on_limit: defer`); the detail "
                                         "names the cap and the sends that count"),
    "cooldown": (("suppressed",), "the rule sent to this customer within its `cooldown`"),
    "unsubscribed": (("suppressed",), "the customer unsubscribed from marketing on this channel (or all channels)"),
    "quiet_hours": (("deferred",), "inside quiet hours in the customer's time zone; the detail gives the new time"),
    "window": (("deferred", "suppressed"), "outside the rule's send `window` (suppressed when the window lies "
                                           "wholly inside quiet hours)"),
    "expired": (("expired",), "could not be sent within `expires` of its due time (or a deferral would pass it)"),
    "template_error": (("failed",), "the template could not be rendered (e.g. a missing value); that message only"),
    "expression_error": (("failed",), "an `if`, `unless` or `send_at` expression could not be evaluated"),
    "no_contact": (("failed",), "the customer has no address for the channel (no phone for SMS, no email)"),
    "engine_error": (("failed",), "the engine could not handle this message (unexpected data or a bug); the "
                                  "detail gives the error, the daemon's log the traceback"),
    "channel_unavailable": (("failed",), "the message's channel is no longer in config.yaml"),
    "channel_error": (("failed",), "the channel reported a delivery failure: a permanent one (invalid number, "
                                   "rejected template), or a transient one on the last of `dispatch.retry.attempts`"),
    "retry": (("deferred",), "a transient channel failure (timeout, 5xx, provider rate limit) or a channel paused "
                             "after repeated failures; the detail gives the error, the attempt and the next try"),
}
