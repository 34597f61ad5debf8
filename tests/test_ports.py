"""The suite does not depend on free well-known ports.

Dask's dashboard listens on port 8787 by default; when another server holds it, Dask
warns and moves elsewhere, and the suite turns warnings into errors. The Dask tests ask
for any free port (``dashboard_address=":0"``); this checks that they pass with 8787 taken.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DASK_PORT = 8787


@contextlib.contextmanager
def _hold_port(port: int):
    """Listen on 127.0.0.1:`port` for the duration; if someone else already holds it,
    the condition under test holds anyway and nothing is bound."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
        yield
    finally:
        sock.close()


@pytest.mark.slow
def test_dask_tests_pass_while_the_dashboard_port_is_taken(tmp_path):
    pytest.importorskip(
        "dask.distributed", reason="dask.distributed is not installed: no Dask tests to run"
    )
    report = tmp_path / "report.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={report}",
        # every Dask test has "dask" in its name; the whole tree is collected, so that
        # conftest.py leaves out the backends that are not selected, as in a normal run
        "-k",
        "dask",
        f"--ignore={Path(__file__).relative_to(ROOT)}",
        os.fspath(TESTS.relative_to(ROOT)),
    ]
    with _hold_port(DASK_PORT):
        # no timeout: how long the suite may take is the caller's business
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    output = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, output
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None, output
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] >= 1, ("no Dask test was selected", output)
    assert counts["failures"] == counts["errors"] == counts["skipped"] == 0, (counts, output)
