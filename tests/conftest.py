import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def metafor_reference():
    """Reference values written by validation/make_metafor_fixtures.R (R metafor, tight control)."""
    return json.loads((FIXTURES / "metafor_reference.json").read_text())


def write_csv(path, text):
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def _close_figures():
    """Figures a test draws are closed after it, so no test depends on how many others drew before it."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """The report's coverage-table cache goes to a folder of this test session (never the user's
    ~/.cache), and commands run as subprocesses inherit it."""
    import os

    before = os.environ.get("PFPS_META_CACHE")
    os.environ["PFPS_META_CACHE"] = str(tmp_path_factory.mktemp("pfps_meta_cache"))
    yield
    if before is None:
        os.environ.pop("PFPS_META_CACHE", None)
    else:
        os.environ["PFPS_META_CACHE"] = before
