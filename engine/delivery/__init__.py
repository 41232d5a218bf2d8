"""Where a message leaves: dispatch (claim, unless, gate, render, send, record), the
anti-spam gate, send windows, channel pacing and channel health."""
