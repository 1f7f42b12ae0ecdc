"""Wire models: what the worker reads, what it writes, and how bad input is described."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import DeadLetterKind, Rejected
from .media.refs import MediaRef

Header = tuple[str, bytes]

# A verdict carries the event's metadata back out as JSON, and orjson writes about 250
# levels: deeper metadata is refused on arrival, before the engine spends time on it.
MAX_METADATA_DEPTH = 200


class ContentEvent(BaseModel):
    """One item to classify. Field types are strict: a number is not an id.

    ``content`` may be left out when ``media`` carries images or video; the prompt then
    says ``[image]`` or ``[video]`` where the text would stand.
    """

    model_config = ConfigDict(extra="ignore", strict=True)

    id: StrictStr = Field(min_length=1)
    content: StrictStr | None = None
    media: list[MediaRef] = Field(default_factory=list)
    policies: list[StrictStr] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None

    @field_validator("content")
    @classmethod
    def _content_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("content is empty")
        return value

    @model_validator(mode="after")
    def _something_to_classify(self) -> ContentEvent:
        if self.content is None and not self.media:
            raise ValueError("content is required when there is no media")
        return self

    def text(self, kind: str | None = None) -> str:
        """The text under CONTENT: the content, else ``[image]``/``[video]`` for ``kind``."""
        if self.content is not None:
            return self.content
        return f"[{kind or (self.media[0].type if self.media else 'image')}]"

    @field_validator("metadata")
    @classmethod
    def _metadata_not_too_deep(cls, value: dict[str, Any]) -> dict[str, Any]:
        if _nesting_exceeds(value, MAX_METADATA_DEPTH):
            raise ValueError(
                f"nested deeper than {MAX_METADATA_DEPTH} levels; a verdict could not carry it"
            )
        return value

    @field_validator("created_at", mode="before")
    @classmethod
    def _parse_rfc3339(cls, value: Any) -> Any:
        # Strict mode refuses strings for datetimes; RFC 3339 text is the wire format.
        if isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        return value


def _nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether objects and arrays in ``value`` nest more than ``limit`` levels.

    Level by level rather than recursively: orjson reads 1,024 levels, past Python's own
    recursion limit.
    """
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
    return False


class Source(BaseModel):
    topic: str
    partition: int
    offset: int


class Latency(BaseModel):
    queue: float
    inference: float
    total: float


class HashMatch(BaseModel):
    """The bank entry that decided a policy: a bank, a signal type, a Hamming distance (0
    for exact types)."""

    bank: str
    signal_type: str
    distance: int


class PolicyVerdict(BaseModel):
    """One policy's decision. ``source`` says who decided: ``model`` (``score`` = P("1"),
    ``confidence`` = probability of the label) or ``hash_match`` (a bank held the content:
    ``match`` names it, and there is no score or confidence)."""

    policy: str
    policy_version: str
    label: Literal[0, 1]
    score: float | None
    confidence: float | None
    cached: bool = False  # the score came from the verdict cache, not an engine request
    source: Literal["model", "hash_match"] = "model"
    match: HashMatch | None = None


class MediaSeen(BaseModel):
    """One media item a verdict classified: where it came from and the hash of its bytes."""

    where: str  # its URL, or media[i] for inline data
    kind: Literal["image", "video"]
    sha256: str
    frames: int


class Verdict(BaseModel):
    id: str
    label: Literal[0, 1]
    route: Literal["auto", "review"]
    verdicts: list[PolicyVerdict]
    model: str
    source: Source
    metadata: dict[str, Any]
    latency_ms: Latency
    classified_at: datetime
    media: list[MediaSeen] = Field(default_factory=list)  # written only when there is some

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude=None if self.media else {"media"}))


Origin = Literal["review_band", "audit_sample"]


class ReviewRecord(Verdict):
    """A review-topic record: the verdict as published, plus why it went to review.

    ``origin`` is ``review_band`` for an item with an uncertain score (its verdict's route is
    ``review``), ``audit_sample`` for a copy of an automatic decision (route ``auto``).
    ``audit_rates`` names, for an audit copy, each policy whose decision was sampled and the
    share of that policy's decisions with the same label that are sampled; empty otherwise.
    """

    origin: Origin
    audit_rates: dict[str, float]

    @classmethod
    def of(cls, verdict: Verdict, audit_rates: dict[str, float]) -> ReviewRecord:
        origin: Origin = "review_band" if verdict.route == "review" else "audit_sample"
        fields = {name: getattr(verdict, name) for name in Verdict.model_fields}
        return cls.model_construct(**fields, origin=origin, audit_rates=audit_rates)


class BadEvent(Rejected):
    """An event that cannot be classified. ``kind`` becomes the dead letter's error type."""


def decode_event(value: bytes | None) -> ContentEvent:
    """Parse one record value, raising BadEvent with a readable reason."""
    data = decode_object(value)
    try:
        return ContentEvent.model_validate(data)
    except ValidationError as exc:
        raise BadEvent(DeadLetterKind.INVALID_EVENT, first_errors(exc, "event")) from None
    except ValueError as exc:  # created_at that fromisoformat refuses
        raise BadEvent(DeadLetterKind.INVALID_EVENT, f"created_at: {exc}") from None


def decode_object(value: bytes | None) -> dict[str, Any]:
    """A record value that must be one JSON object; BadEvent saying why it is not."""
    if value is None:
        raise BadEvent(DeadLetterKind.EMPTY_VALUE, "record has no value")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadEvent(DeadLetterKind.INVALID_JSON, f"value is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadEvent(
            DeadLetterKind.NOT_AN_OBJECT, f"value is JSON {type(data).__name__}, not an object"
        )
    return data


def first_errors(exc: ValidationError, whole: str, limit: int = 3) -> str:
    """The first few validation errors, each as ``field: message`` (``whole`` for the root)."""
    parts = []
    for err in exc.errors()[:limit]:
        field = ".".join(str(p) for p in err["loc"]) or whole
        parts.append(f"{field}: {err['msg']}")
    return "; ".join(parts)


DEAD_LETTER_PREFIX = "x-dead-letter-"


def dead_letter_headers(
    headers: list[Header],
    kind: DeadLetterKind,
    reason: str,
    topic: str,
    partition: int,
    offset: int,
) -> list[Header]:
    """The original headers plus ours naming the error and where the record came from."""
    ours = {
        "error-type": kind,
        "reason": reason[:2000],
        "source-topic": topic,
        "source-partition": str(partition),
        "source-offset": str(offset),
    }
    kept = [(k, v) for k, v in headers if not k.startswith(DEAD_LETTER_PREFIX)]
    return kept + [(DEAD_LETTER_PREFIX + k, v.encode()) for k, v in ours.items()]
