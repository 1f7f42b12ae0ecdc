"""Start-up checks that need no engine: the policies compiled with the model's tokenizer.

The tokenizer loads in a second and the engine in a minute or more, so a policy pack that
cannot serve (bad file, unknown id in routing, a policy longer than the model takes) stops
start-up before the model loads.
"""

from __future__ import annotations

from typing import Any

import structlog

from .catalog import Catalog, compile_catalog
from .config import Settings
from .engine.tokenizer import load_tokenizer
from .errors import UsageError
from .kv_footprint import KvShape, kv_shape
from .model_files import pretrained_config
from .policies import PolicyError, PolicyRegistry, load_policies
from .policy_lint import lint
from .prompts import PromptError

log = structlog.get_logger("worker.preflight")
DEFAULT_MAX_MODEL_LEN = 8192  # when neither the settings nor the model say
UNBOUNDED = 2**62  # a context no policy outgrows


def model_max_len(configured: int | None, model: str | None, tokenizer: Any) -> int:
    """engine.max_model_len, or what the model's config allows (as vLLM takes it), or the
    tokenizer's own limit."""
    if configured:
        return configured
    limit = _position_limit(model) if model else None
    if not isinstance(limit, int):
        limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and limit < 10**7 else DEFAULT_MAX_MODEL_LEN


def load_kv_shape(settings: Settings, model: str) -> tuple[KvShape, int] | None:
    """``model``'s KV shape (with the engine's dtype) and the cache block size, or None when
    its config cannot be read (the footprint is then not shown)."""
    engine = settings.engine
    config = pretrained_config(model)
    if config is None:
        return None
    # A remote engine's servers choose their own dtype and blocks: the defaults are shown.
    extra_args = getattr(engine, "extra_args", {})
    dtype = extra_args.get("kv_cache_dtype") or getattr(engine, "dtype", "auto")
    try:
        shape = kv_shape(config.to_dict(), None if dtype == "auto" else dtype)
    except Exception:  # a config without attention sizes: nothing to report
        return None
    return shape, int(extra_args.get("block_size") or 16)


def _position_limit(model: str) -> Any:
    config = pretrained_config(model)  # None: the caller falls back on the tokenizer
    config = getattr(config, "text_config", None) or config
    return getattr(config, "max_position_embeddings", None)


def compile_policies(settings: Settings, registry: PolicyRegistry | None = None) -> Catalog:
    """The policy pack (or ``registry``) compiled as the worker will serve it; raises
    PolicyError, PromptError or EngineStartError (the model's tokenizer cannot load). What
    ``policies check`` would warn about is logged, once per start."""
    engine = settings.engine
    tokenizer = load_tokenizer(engine.tokenizer or engine.model)
    if engine.kind == "remote":
        # The servers' context is theirs to say: the policies' lengths are checked against it
        # once they answer, with the number they serve.
        catalog = compile_for(settings, tokenizer, UNBOUNDED, registry)
    else:
        limit = model_max_len(engine.max_model_len, engine.model, tokenizer)
        catalog = compile_for(settings, tokenizer, limit, registry)
    for policy in catalog.registry:
        for finding in lint(policy):
            if finding.level == "warning":
                log.warning("policy warning", policy=policy.id, warning=finding.message)
    return catalog


def compile_for(
    settings: Settings,
    tokenizer: Any,
    max_model_len: int,
    registry: PolicyRegistry | None = None,
    previous: Catalog | None = None,
) -> Catalog:
    """The configured policies (shadows too; or ``registry``) compiled for this tokenizer and
    context; a policy too long for the context names the limit to raise. ``previous``: the
    catalog in use, whose unchanged files and policy texts are not parsed or compiled again."""
    if registry is None:
        policies = settings.policies
        before = previous.registry if previous is not None else None
        registry = load_policies(policies.dir, policies.default, settings.shadow.pairs, before)
    try:
        return compile_catalog(registry, tokenizer, max_model_len, settings.routing, previous)
    except PromptError as exc:
        if exc.kind != "policy_too_long":
            raise
        raise PromptError(exc.kind, f"{exc.reason}: {_context_hint(settings)}") from None


def check_policy_ids(catalog: Catalog, ids: list[str] | None, option: str) -> None:
    """Policy ids named on the command line must be loaded production policies."""
    try:
        catalog.registry.resolve(ids or None)
    except PolicyError as exc:
        registry = catalog.registry
        loaded = ", ".join(sorted(p.id for p in registry if p.id not in registry.shadows))
        raise UsageError(f"{option}: {exc} (loaded: {loaded})") from None


def _context_hint(settings: Settings) -> str:
    if settings.engine.kind == "remote":
        return (
            "serve the model with a larger --max-model-len (the smallest of the engine.url "
            "servers' counts), or shorten the policy"
        )
    return "raise engine.max_model_len (within the model's context), or shorten the policy"
