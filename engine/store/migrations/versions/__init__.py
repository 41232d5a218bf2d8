"""The schema's revisions, oldest first: 0001 is the baseline (the schema of commit 0aec3f5)."""
