import json
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
