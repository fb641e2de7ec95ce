"""The admin HTTP stack (hypercorn, starlette, the routes: about 7 MB) is imported when the
first admin client connects, not at start-up; the port listens from the start and that
first request is answered like any other (docs/PERFORMANCE.md, idle RSS)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import start_csms_process, stop_csms_process


def imported(package: str, log: str) -> bool:
    return re.search(rf"^import time:.*\|\s+{package}$", log, re.MULTILINE) is not None


def test_admin_stack_is_imported_at_the_first_request_which_it_answers(tmp_path: Path
                                                                       ) -> None:
    # -X importtime on stderr (the log): which modules the server imported, and when.
    csms = start_csms_process(tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    try:
        time.sleep(0.3)  # start-up's imports are done when the ports file is written
        assert not imported("hypercorn", csms.log()) and not imported("starlette", csms.log())
        request = urllib.request.Request(f"http://127.0.0.1:{csms.admin_port}/stations")
        try:
            urllib.request.urlopen(request, timeout=10)
            raise AssertionError("anonymous access was allowed")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401 and "error" in json.loads(exc.read())
        log = csms.log()
        assert imported("hypercorn", log) and imported("starlette", log)
        assert "Traceback" not in log
    finally:
        stop_csms_process(csms)
    assert csms.process.returncode == 0
