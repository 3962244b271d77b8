"""Dropping root after the privileged set-up (sockets on port 3544, TUN, raw).

Miredo's order, which we keep: open everything that needs privileges, then
become an unprivileged user for the rest of the process's life.
"""

from __future__ import annotations

import logging
import os
import pwd

from proxy.errors import ConfigError

__all__ = ["check_user", "drop_privileges"]

log = logging.getLogger("proxy.privileges")


def check_user(name: str | None) -> None:
    """Fail early (exit 2) on an unknown ``--user``."""
    if name is None:
        return
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise ConfigError("--user", f"no such user {name!r}") from None


def drop_privileges(name: str | None) -> None:
    """Become ``name`` (groups, gid, then uid).  No-op when ``name`` is None.

    Raises PermissionError when not running as root and ``name`` is another
    user: the caller reports it as a runtime failure.
    """
    if name is None:
        return
    pw = pwd.getpwnam(name)
    if os.getuid() == pw.pw_uid and os.geteuid() == pw.pw_uid:
        return
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    if os.geteuid() == 0 and pw.pw_uid != 0:
        raise PermissionError("privileges could not be dropped")
    log.info("running as user %s (uid %d)", name, pw.pw_uid)
