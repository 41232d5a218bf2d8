#!/usr/bin/env python3
"""The one entry point: `python run.py --help` (check, dry-run, ingest, daemon)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine.cli import main  # noqa: E402

if __name__ == "__main__":
    main(prog_name="run.py")
