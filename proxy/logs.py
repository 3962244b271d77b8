"""Logging set-up shared by every role: text for people, JSON lines for machines.

Cores log through ``logging.getLogger("proxy.<module>")`` and guard
per-packet debug lines with ``isEnabledFor`` so a busy relay pays nothing
for them.  Extra structured fields passed as ``extra={"fields": {...}}``
appear as keys of the JSON object.
"""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["setup_logging", "JsonFormatter"]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        obj = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            obj.update(fields)
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


def setup_logging(verbose: int = 0, fmt: str = "text", stream=None) -> None:
    """Configure the root ``proxy`` logger.

    :param verbose: 0 = warnings and state changes (INFO for roles),
        1 = info, 2+ = debug (per-packet drop reasons).
    :param fmt: ``text`` or ``json``.
    """
    level = logging.INFO if verbose <= 1 else logging.DEBUG
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        f = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        f.converter = time.localtime
        handler.setFormatter(f)
    root = logging.getLogger("proxy")
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
