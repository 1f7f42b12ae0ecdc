"""The decisions contract: what a person decided about one item under one policy.

Review tools publish these to the decisions topic; ``eval decisions`` joins them with the
review records they answer. ``schemas/decision.schema.json`` is generated from ``Decision``
(``python -m worker.decisions``) and checked against it by the tests.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from .errors import DeadLetterKind
from .events import BadEvent, decode_object, first_errors

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "decision.schema.json"


class Decision(BaseModel):
    """One reviewer decision. Unknown fields are ignored, so tools may add their own."""

    model_config = ConfigDict(extra="ignore", strict=True, title="Decision")

    id: StrictStr = Field(min_length=1, description="The content event's id (the verdict's id).")
    policy: StrictStr = Field(min_length=1, description="Policy id the decision is about.")
    policy_version: StrictStr | None = Field(
        None,
        description="The verdict's policy_version (sha256 of the policy text) the reviewer saw; "
        "null when the review tool does not carry it: the review record's is used.",
    )
    decision: Literal[0, 1] = Field(description="1: the content meets the policy; 0: it does not.")
    reviewer: StrictStr = Field(min_length=1, description="Who decided (an id or an address).")
    decided_at: datetime = Field(description="When the decision was made (RFC 3339).")
    origin: Literal["review_band", "audit_sample"] | None = Field(
        None,
        description="Why the item was in review: its score was uncertain (review_band) or it "
        "is an audit copy of an automatic decision (audit_sample); null when the review tool "
        "does not carry it: the review record's origin is used.",
    )

    @field_validator("decision", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        # JSON true is not 1 here: a tool that sends booleans has misread the contract.
        if isinstance(value, bool):
            raise ValueError("must be the number 0 or 1, not a boolean")
        return value

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


def decode_decision(value: bytes | None) -> Decision:
    """Parse one decision record, raising BadEvent with a readable reason."""
    data = decode_object(value)
    try:
        return Decision.model_validate(_with_datetime(data))
    except ValidationError as exc:
        raise BadEvent(DeadLetterKind.INVALID_DECISION, first_errors(exc, "decision")) from None


def _with_datetime(data: dict[str, Any]) -> dict[str, Any]:
    # Strict mode refuses strings for datetimes; RFC 3339 text is the wire format.
    value = data.get("decided_at")
    if isinstance(value, str):
        try:
            return {**data, "decided_at": datetime.fromisoformat(value.replace("Z", "+00:00"))}
        except ValueError:
            raise BadEvent(
                DeadLetterKind.INVALID_DECISION, f"decided_at: not RFC 3339: {value!r}"
            ) from None
    return data


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a decision record, as committed in schemas/."""
    schema = Decision.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def schema_text() -> str:
    return orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


if __name__ == "__main__":
    SCHEMA_PATH.write_text(schema_text() + "\n")
    sys.stdout.write(f"wrote {SCHEMA_PATH}\n")
