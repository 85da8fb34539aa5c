"""The README's event-model reference is the generator's output: it cannot drift from the models."""

from __future__ import annotations

from pathlib import Path

from bridge.plugin.reference import END, START, reference

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_event_reference_matches_the_models():
    text = README.read_text()
    start, end = text.index(START), text.index(END) + len(END)
    assert text[start:end] == reference(), "run: uv run python -m bridge.plugin.reference"
