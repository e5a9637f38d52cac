"""Rebuild RUN_DIR/last.keras from RUN_DIR/backup/ when only run.json, history.csv and backup/ were kept
(as this project commits its long runs): python scripts/last_from_backup.py runs/okd3332"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edge.errors import UserError  # noqa: E402
from trainer.fit import last_from_backup  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/last_from_backup.py RUN_DIR")
    try:
        print(last_from_backup(Path(sys.argv[1])))
    except UserError as error:
        sys.exit(f"last_from_backup: {error}")
