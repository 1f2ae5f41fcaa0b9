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
