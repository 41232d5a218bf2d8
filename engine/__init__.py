"""Returning-customer automation engine: order events -> YAML rules -> timed messages."""

__version__ = "0.1.0"
