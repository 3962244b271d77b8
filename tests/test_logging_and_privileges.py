"""Logging formats and the privilege drop of the roles."""

from __future__ import annotations

import io
import json
import logging
import os
import pwd
import socket
import subprocess
import sys

import pytest

from proxy.status import StatusFile
from proxy.testing.waiting import wait_until

from proxy.logs import setup_logging


def test_json_log_lines():
    buf = io.StringIO()
    setup_logging(1, "json", stream=buf)
    logging.getLogger("proxy.test").info("hello %s", "world", extra={"fields": {"peer": "x"}})
    obj = json.loads(buf.getvalue().strip())
    assert obj["msg"] == "hello world" and obj["level"] == "info" and obj["peer"] == "x"
    assert obj["logger"] == "proxy.test"


def test_text_log_lines():
    buf = io.StringIO()
    setup_logging(2, "text", stream=buf)
    logging.getLogger("proxy.test").debug("detail")
    assert "DEBUG proxy.test: detail" in buf.getvalue()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_server_drops_privileges_after_binding():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import pathlib
    import tempfile
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="privdrop-"))
    os.chmod(workdir, 0o777)  # the unprivileged process rewrites the status file
    status = workdir / "status.json"
    p = subprocess.Popen([sys.executable, "-m", "proxy", "server", "--address", "127.0.0.1", "--allow-loopback",
                          "--port", str(port), "--user", "nobody", "--status-file", str(status)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: status.exists() and json.loads(status.read_text())["state"] == "qualified", 10,
                   "the server to report itself up")
        uid = next(int(line.split()[1]) for line in open(f"/proc/{p.pid}/status") if line.startswith("Uid:"))
        assert uid == pwd.getpwnam("nobody").pw_uid
    finally:
        p.terminate()
        assert p.wait(10) == 0, p.stdout.read().decode()
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)


def test_status_file_failure_does_not_raise(tmp_path):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("proxy.status")
    logger.addHandler(handler)
    try:
        s = StatusFile(str(tmp_path / "missing-dir" / "status.json"), "server")
        s.update(state="qualified")   # logged, not raised
        s.update(state="failed")
    finally:
        logger.removeHandler(handler)
    assert sum("cannot write status file" in r.getMessage() for r in records) == 1
