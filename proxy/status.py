"""The ``--status-file``: a JSON object a script can watch (CONTRACT.md).

Rewritten atomically (write a temporary file, then ``rename``) so a reader
never sees half an object.  At least ``role, state, address, nat, server,
mtu, since``; roles add counters.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from typing import Any

__all__ = ["StatusFile", "STATES", "NAT_TYPES"]

log = logging.getLogger("proxy.status")

STATES = ("starting", "qualifying", "qualified", "failed")
NAT_TYPES = ("open", "cone", "restricted", "symmetric", "unknown")


class StatusFile:
    """Holds the current status and rewrites the file when it changes."""

    def __init__(self, path: str | None, role: str) -> None:
        self.path = path
        self._failing = False
        self.data: dict[str, Any] = {
            "role": role,
            "state": "starting",
            "address": None,
            "nat": "unknown",
            "server": None,
            "mtu": None,
            "since": time.time(),
            "pid": os.getpid(),
        }

    def update(self, **fields: Any) -> None:
        """Merge ``fields``; a change of ``state`` resets ``since``; then write."""
        if "state" in fields and fields["state"] != self.data["state"]:
            fields.setdefault("since", time.time())
        self.data.update(fields)
        self.write()

    def write(self) -> None:
        """Rewrite the file; a failure is logged (once) and never stops the role."""
        if not self.path:
            return
        try:
            self._write()
        except OSError as e:
            if not self._failing:
                log.warning("cannot write status file %s: %s", self.path, e)
            self._failing = True
        else:
            self._failing = False

    def _write(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".status-", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.data, f, indent=1, sort_keys=True)
                f.write("\n")
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
