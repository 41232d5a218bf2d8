"""`file`: appends one JSON object per message to a file (an outbox other tools read)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from engine.channels.base import Channel, Outbound


class FileChannel(Channel):
    type_name = "file"
    options_help = {**Channel.options_help, "path": "file to append JSON lines to, relative to config.yaml"}
    required = ("path",)

    def __init__(self, name, options, base_dir: Path):
        super().__init__(name, options, base_dir)
        self.path = (base_dir / options["path"]).resolve()
        self._fh: IO[str] | None = None

    def send(self, message: Outbound) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(json.dumps(message.to_json(), ensure_ascii=False) + "\n")

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
