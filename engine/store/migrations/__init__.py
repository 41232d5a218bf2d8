"""Alembic's script directory for the engine's schema: env.py, script.py.mako and the
revisions in versions/ (see engine.store.schema and the README's "Schema migrations")."""
