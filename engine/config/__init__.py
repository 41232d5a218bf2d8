"""config.yaml: YAML read with line marks, its sections (limits, http, profile, fields) and its JSON Schema."""
