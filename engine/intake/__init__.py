"""Where an event goes in: the canonical event, the state it changes (customer, order,
profile), and ingest (store, match, schedule)."""
