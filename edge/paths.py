"""Where the shipped config.toml and models/ live: the source checkout, or the installed share/fer-edge.

A checkout (an editable install, the tests) has them beside edge/. A regular `pip install .[edge]` copies
them as data files (pyproject.toml) into `<prefix>/share/fer-edge` of the environment, for example
`/opt/fer-edge/.venv/share/fer-edge`.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
INSTALLED = Path(sysconfig.get_path("data")) / "share" / "fer-edge"


def data_root(checkout: Path = CHECKOUT, installed: Path = INSTALLED) -> Path:
    """The checkout when edge/ runs from one (it has pyproject.toml), else the installed data folder."""
    return checkout if (checkout / "pyproject.toml").is_file() else installed


ROOT = data_root()
MODELS = ROOT / "models"
