from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import ROOT
from edge.errors import UserError
from edge.manifest import load_manifest

SHIPPED_MODEL = ROOT / "models" / "fer_cnn_int8.tflite"


@pytest.fixture(scope="session")
def edge_model(request: pytest.FixtureRequest) -> Path:
    """The shipped int8 model when it is there and loads, else the small one the tests train.
    Daemon tests never depend on its accuracy."""
    try:
        load_manifest(SHIPPED_MODEL)
        return SHIPPED_MODEL
    except UserError:
        return request.getfixturevalue("int8_model")
