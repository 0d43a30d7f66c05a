"""The answer schema every structured stage trains to: exactly four string fields, in a fixed order."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

FIELDS = ("header", "margin", "footer", "text")


@dataclass(frozen=True)
class PageAnswer:
    """What is printed on a page, split the way DharmaOCR's schema splits it."""

    header: str = ""
    margin: str = ""
    footer: str = ""
    text: str = ""

    def to_json(self) -> str:
        """The training target: compact JSON, all four keys, accents kept as they are."""
        return json.dumps(asdict(self), ensure_ascii=False)

    def to_plain_text(self) -> str:
        """Reading order used by the plain-text task and by character error rates: header, margin, body, footer."""
        return "\n".join(part for part in (self.header, self.margin, self.text, self.footer) if part)

    @classmethod
    def from_dict(cls, fields: dict) -> "PageAnswer":
        """Missing fields are empty (the benchmark stores only fields present on the page); unknown keys are an error."""
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown answer field(s) {unknown}; the schema has exactly {list(FIELDS)}")
        not_strings = [key for key, value in fields.items() if not isinstance(value, str)]
        if not_strings:
            raise ValueError(f"answer field(s) {not_strings} must be strings")
        return cls(**fields)


def parse_answer(output: str) -> PageAnswer | None:
    """A model output as a PageAnswer, or None when it is not a JSON object of the schema's string fields."""
    try:
        fields = json.loads(output)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError, as is an over-long integer
        return None
    if not isinstance(fields, dict):
        return None
    try:
        return PageAnswer.from_dict(fields)
    except ValueError:
        return None
