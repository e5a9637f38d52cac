"""The README documents what the code does: its topic table is the one the publisher uses."""

from __future__ import annotations

from edge.topics import topics_markdown
from tests.shared import REPO


def test_readme_topic_table_is_the_publishers() -> None:
    assert topics_markdown() in (REPO / "README.md").read_text(), "regenerate with edge.topics.topics_markdown()"


def test_readme_commands_are_make_targets() -> None:
    readme, makefile = (REPO / "README.md").read_text(), (REPO / "Makefile").read_text()
    for target in ("run", "test"):
        assert f"make {target}\n" in readme and f"\n{target}:" in makefile
    assert "make test" in (REPO / ".ci" / "run").read_text()
