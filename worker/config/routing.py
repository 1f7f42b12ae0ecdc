"""Thresholds and review bands: how a score becomes a label and a route."""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import Section


class Band(Section):
    """Scores in [review_low, review_high) are uncertain and go to review as well."""

    threshold: float | None = Field(None, ge=0, le=1, description="Label is 1 when score >= this.")
    review_low: float | None = Field(None, ge=0, le=1)
    review_high: float | None = Field(None, ge=0, le=1)
    audit_label_1: float | None = Field(None, ge=0, le=1, description="Audit share, label 1.")
    audit_label_0: float | None = Field(None, ge=0, le=1, description="Audit share, label 0.")

    @model_validator(mode="after")
    def _band_is_ordered(self) -> Band:
        if None not in (self.review_low, self.review_high) and self.review_low > self.review_high:
            raise ValueError("review_low must not exceed review_high")
        return self


def env_spelling(policy_id: str) -> str:
    """How an id is written inside an environment variable's name."""
    return policy_id.replace("-", "_").replace(".", "_")


class RoutingSettings(Section):
    threshold: float = Field(0.5, ge=0, le=1, description="Label is 1 when P('1') >= this.")
    review_low: float = Field(0.2, ge=0, le=1, description="Lower edge of the review band.")
    review_high: float = Field(0.8, ge=0, le=1, description="Upper edge (exclusive).")
    # Audit copies: a share of the automatically decided items also goes to review, so that
    # reviewers' decisions can estimate the precision and recall of automatic decisions.
    audit_label_1: float = Field(
        0.0, ge=0, le=1, description="Share of automatic label-1 decisions copied to review."
    )
    audit_label_0: float = Field(
        0.0, ge=0, le=1, description="Share of automatic label-0 decisions copied to review."
    )
    policies: dict[str, Band] = Field(
        default_factory=dict, description="Per-policy overrides; win over policy front matter."
    )

    def override(self, policy_id: str) -> Band | None:
        """The per-policy override for an id, also under the id's env spelling (its '-' and
        '.' as '_': WORKER_ROUTING__POLICIES__HATE_SPEECH__THRESHOLD reaches hate-speech);
        the exact id wins."""
        exact = self.policies.get(policy_id)
        return exact if exact is not None else self.policies.get(env_spelling(policy_id))

    @model_validator(mode="after")
    def _band_is_ordered(self) -> RoutingSettings:
        if self.review_low > self.review_high:
            raise ValueError("review_low must not exceed review_high")
        return self
