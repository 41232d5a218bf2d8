"""Rules: the format marketers write (schema, fields), loading with line marks, the model,
calendar triggers, templates and expressions, and what `check` tries on sample data."""
