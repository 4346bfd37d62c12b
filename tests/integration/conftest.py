"""pytest fixtures wrapping harness.py (the harness itself has no pytest in it).

Fixtures
  tap          factory: tap(args=(), **Smtptap kwargs) -> started Smtptap, stopped (and
               checked: exit 0, no sanitizer report) at teardown
  aiosmtpd     AiosmtpdServer() running for the test
  aiosmtpd_bdat  AiosmtpdServer(bdat=True)
  smtp_sink    SmtpSink() running for the test
  need         need("swaks", ...) skips the test with a reason when a tool is missing
A failing test gets every smtptap transcript it started attached to its report.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import harness  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _private_data_home(tmp_path_factory):
    """smtptap offers STARTTLS by default, so it opens its CA in $XDG_DATA_HOME/smtptap:
    keep that inside the test run, never in the user's home."""
    old = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    yield
    if old is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = old


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for i, t in enumerate(getattr(item, "_smtptaps", [])):
            rep.sections.append((f"smtptap #{i} stderr ({' '.join(t.cmd)})", t.transcript()))


@pytest.fixture
def tap(request):
    started = []
    request.node._smtptaps = started

    def start(args=(), **kw):
        t = harness.Smtptap(args, **kw)
        started.append(t)
        return t.start()

    yield start
    errors = []
    for t in reversed(started):
        try:
            t.stop()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("smtptap did not shut down cleanly:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture
def need():
    def check(*tools):
        for t in tools:
            if not harness.have_tool(t):
                pytest.skip(f"{t} is not installed (Debian package needed for this test)")
    return check


@pytest.fixture
def aiosmtpd():
    with harness.AiosmtpdServer() as srv:
        yield srv


@pytest.fixture
def aiosmtpd_bdat():
    with harness.AiosmtpdServer(bdat=True) as srv:
        yield srv


@pytest.fixture
def smtp_sink(need):
    need("smtp-sink")
    with harness.SmtpSink() as sink:
        yield sink
