"""What starts a rule: event matching and the scheduled message (due time, dedup key),
and the sweeps for calendar rules with their SQL prefilters."""
