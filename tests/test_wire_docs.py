"""The records the README and docs/architecture.md show are the records the code defines
(``stream.records``): each JSON example is a valid record with no field the model lacks, and
the alert table of the README names exactly the alert record's fields."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stream.records import AlertRecord, DeadLetter, NegativeMention, TweetIn, WireRecord

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def json_after(text: str, heading: str) -> dict:
    """The first ```json block after ``heading``."""
    block = re.search(r"```json\n(.*?)\n```", text[text.index(heading):], re.S)
    assert block is not None, f"no JSON example after {heading!r}"
    return json.loads(block.group(1))


@pytest.mark.parametrize(("text", "heading", "model"), [
    (README, "**Tweet in**", TweetIn),
    (README, "**Dead letter**", DeadLetter),
    (ARCHITECTURE, "**Negative entity mention**", NegativeMention),
])
def test_documented_examples_are_valid_records(text: str, heading: str,
                                               model: type[WireRecord]) -> None:
    example = json_after(text, heading)
    record = model.model_validate(example)
    assert set(example) <= set(model.model_fields), set(example) - set(model.model_fields)
    assert record.v == 1


def test_the_readme_alert_table_names_every_alert_field() -> None:
    table = README[README.index("The alert record ("):]
    table = table[table.index("| field | meaning |"):]
    rows = table[: table.index("\n\n")].splitlines()[2:]
    documented = {name for row in rows for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert documented == set(AlertRecord.model_fields)
