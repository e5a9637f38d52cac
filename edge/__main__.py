"""`python -m edge` is `fer-edge`."""

from edge.cli import app

app(prog_name="fer-edge")
