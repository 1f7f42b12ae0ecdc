"""The test model's weights: the hand-set two-layer matching circuit ``devmodel`` describes.

Layer 1 writes, at each trigger token, the share of attention left on ``<bos>``; layer 2 finds
second copies of a trigger by that share; the output head turns "a second copy exists" into
the logit gap between "1" and "0".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .words import BOS, TRIGGER_WORDS

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# --- Model shape -------------------------------------------------------------------------

HIDDEN = 128
HEADS = 2
HEAD_DIM = 64
INTERMEDIATE = 64  # the MLPs are all zeros; they take no part in the circuit
MAX_POSITIONS = 8192
ROPE_THETA = 1e12
RMS_EPS = 1e-6

# Residual stream layout: one dimension per feature, then one per trigger word, then filler
# that only sets every embedding to the same norm and feeds the logits of ordinary tokens.
CONST, IS_BOS, IS_TRIGGER, BOS_SHARE, REPEAT = range(5)
FIRST_CODE = 5
FIRST_FILLER = FIRST_CODE + len(TRIGGER_WORDS)

# Attention logits (after the 1/sqrt(head_dim) scaling): layer 1 puts the sink and every
# copy of a token at SINK_LOGIT, far above anything else; layer 2 puts second copies
# REPEAT_LOGIT above the sink and first copies that far below it.
SINK_LOGIT = 30.0
REPEAT_LOGIT = 12.0
# Layer-1 <bos> share summed over both heads: 2 for ordinary tokens and <bos>, 1 + 1/2 at the
# first copy of a trigger word (its own head splits two ways), 1 + 1/3 at the second copy.
# Layer 2 thresholds halfway between the two copies.
SHARE_THRESHOLD = (1.5 + 4 / 3) / 2
SHARE_GAP = 1.5 - SHARE_THRESHOLD  # = 1/12, the key's margin on either side of the threshold
# Logit gap between "1" and "0" is ANSWER_GAIN * (repeat - 1/2), about +-8 after the norm.
ANSWER_GAIN = 16.0
# "0" and "1" get this much extra logit so that they are the model's top tokens anyway.
ANSWER_BIAS = 12.0
# Scale of the random output rows of all other tokens (logits of about +-1).
OTHER_LOGIT_SCALE = 0.1


# --- Weights -----------------------------------------------------------------------------


def _still_dims(count: int) -> list[int]:
    """Head dimensions whose RoPE rotation over the whole context is negligible.

    Llama pairs dimension j with j + HEAD_DIM/2 and turns them at theta**(-2j/HEAD_DIM) per
    position; the last pairs turn by ~1e-4 rad over MAX_POSITIONS, so dot products there do
    not depend on distance.
    """
    half = HEAD_DIM // 2
    dims = []
    for j in range(half - 1, -1, -1):
        if MAX_POSITIONS * ROPE_THETA ** (-2 * j / HEAD_DIM) > 1e-3:
            break
        dims += [j, j + half]
    if len(dims) < count:
        raise RuntimeError(f"need {count} still RoPE dimensions per head, have {len(dims)}")
    return dims[:count]


def _trigger_slots() -> list[tuple[int, int]]:
    """(layer-1 head, query/key dimension in it) for each trigger; dim 0 is the sink's."""
    per_head = -(-len(TRIGGER_WORDS) // HEADS)
    dims = _still_dims(per_head + 1)
    return [(i % HEADS, dims[1 + i // HEADS]) for i in range(len(TRIGGER_WORDS))]


def _embeddings(
    vocab: int, bos: int, triggers: list[int], rng: np.random.Generator, reserved: int = 0
) -> np.ndarray:
    """Features in the first dimensions; filler brings every row to norm sqrt(HIDDEN), so the
    first RMSNorm divides by exactly 1. The last ``reserved`` dimensions stay zero (the
    seeing model's visual codes)."""
    emb = np.zeros((vocab, HIDDEN), dtype=np.float64)
    emb[:, CONST] = 1.0
    emb[bos, IS_BOS] = 1.0
    for i, token in enumerate(triggers):
        emb[token, IS_TRIGGER] = 1.0
        emb[token, FIRST_CODE + i] = 1.0
    _fill(emb, rng, reserved)
    return emb


def _fill(rows: np.ndarray, rng: np.random.Generator, reserved: int = 0) -> None:
    """Random filler bringing each row to norm sqrt(HIDDEN), outside the reserved dims."""
    end = HIDDEN - reserved
    filler = rng.standard_normal((rows.shape[0], end - FIRST_FILLER))
    filler /= np.linalg.norm(filler, axis=1, keepdims=True)
    room = HIDDEN - (rows**2).sum(axis=1, keepdims=True)
    rows[:, FIRST_FILLER:end] = filler * np.sqrt(room)


def _layer1(visual: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """Per head: sink and same-word keys score SINK_LOGIT; the value is "this is <bos>".

    ``visual``: trigger indexes whose visual code (the last dims, in order) queries like the
    word's own code but is never a key: an image token finds the word's copies in the text
    and is not found by anything."""
    q, k, v, o = (np.zeros((HIDDEN, HIDDEN)) for _ in range(4))
    gain = np.sqrt(SINK_LOGIT * np.sqrt(HEAD_DIM))  # split evenly between query and key
    sink = _still_dims(1)[0]
    for head in range(HEADS):
        row = head * HEAD_DIM
        # Every token looks for <bos> in every head...
        q[row + sink, CONST] = gain
        k[row + sink, IS_BOS] = gain
        # ...and brings back the share of its attention that <bos> got.
        v[row, IS_BOS] = 1.0
        o[BOS_SHARE, row] = 1.0
    # A trigger token also looks, in its own head, for copies of itself (itself included).
    for i, (head, dim) in enumerate(_trigger_slots()):
        q[head * HEAD_DIM + dim, FIRST_CODE + i] = gain
        k[head * HEAD_DIM + dim, FIRST_CODE + i] = gain
    slots = _trigger_slots()
    for n, i in enumerate(visual):
        head, dim = slots[i]
        q[head * HEAD_DIM + dim, HIDDEN - len(visual) + n] = gain
    return {"q_proj": q, "k_proj": k, "v_proj": v, "o_proj": o}


def _layer2() -> dict[str, np.ndarray]:
    """Head 0: find second copies (low <bos> share), else the sink; copy "is a trigger"."""
    q, k, v, o = (np.zeros((HIDDEN, HIDDEN)) for _ in range(4))
    dim = _still_dims(1)[0]
    # Key = gain * (threshold * is_trigger - bos_share + 2 * is_bos): 0 at <bos>, +-1/12
    # at second/first copies, -2 at ordinary tokens. Query is the constant feature.
    gain = np.sqrt(REPEAT_LOGIT / SHARE_GAP * np.sqrt(HEAD_DIM))
    q[dim, CONST] = gain
    k[dim, IS_TRIGGER] = gain * SHARE_THRESHOLD
    k[dim, BOS_SHARE] = -gain
    k[dim, IS_BOS] = 2 * gain
    v[0, IS_TRIGGER] = 1.0
    o[REPEAT, 0] = 1.0
    return {"q_proj": q, "k_proj": k, "v_proj": v, "o_proj": o}


def _lm_head(vocab: int, no: int, yes: int, rng: np.random.Generator) -> np.ndarray:
    """Logit("1") - logit("0") = ANSWER_GAIN * (repeat - 1/2); other tokens: small random."""
    head = np.zeros((vocab, HIDDEN))
    head[:, FIRST_FILLER:] = rng.standard_normal((vocab, HIDDEN - FIRST_FILLER))
    head *= OTHER_LOGIT_SCALE
    for token, sign in ((yes, 1.0), (no, -1.0)):
        head[token] = 0.0
        head[token, CONST] = ANSWER_BIAS - sign * ANSWER_GAIN / 4
        head[token, REPEAT] = sign * ANSWER_GAIN / 2
    return head


# An image token's own <bos> share starts this much lower, so that one text copy before it
# brings it below the layer-2 threshold (1.5 - 1/4 = 1.25), and none leaves it above (1.75).
VISUAL_SHARE_OFFSET = -0.25


def visual_embeddings(visual: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Rows for image tokens: one per visual trigger (a trigger without a key, see _layer1),
    then a neutral row (an image that shows none). Same norm as every token embedding."""
    rows = np.zeros((len(visual) + 1, HIDDEN), dtype=np.float64)
    rows[:, CONST] = 1.0
    for n in range(len(visual)):
        rows[n, IS_TRIGGER] = 1.0
        rows[n, BOS_SHARE] = VISUAL_SHARE_OFFSET
        rows[n, HIDDEN - len(visual) + n] = 1.0
    _fill(rows, rng, len(visual))
    return rows


def build_weights(
    tokenizer: Tokenizer, seed: int, visual: tuple[int, ...] = (), prefix: str = "model."
) -> dict[str, np.ndarray]:
    """All tensors, float32, under the names LlamaForCausalLM uses (below ``prefix``).

    ``visual``: indexes into TRIGGER_WORDS that images may show (the seeing model)."""
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    ids = [tokenizer.token_to_id(w) for w in TRIGGER_WORDS]
    no, yes = tokenizer.token_to_id("0"), tokenizer.token_to_id("1")
    rng = np.random.default_rng(seed)
    bos = tokenizer.token_to_id(BOS)
    tensors = {
        f"{prefix}embed_tokens.weight": _embeddings(vocab, bos, ids, rng, len(visual)),
        "lm_head.weight": _lm_head(vocab, no, yes, rng),
        f"{prefix}norm.weight": np.ones(HIDDEN),
    }
    for n, attention in enumerate((_layer1(visual), _layer2())):
        layer = f"{prefix}layers.{n}."
        for name, weight in attention.items():
            tensors[f"{layer}self_attn.{name}.weight"] = weight
        tensors[f"{layer}mlp.gate_proj.weight"] = np.zeros((INTERMEDIATE, HIDDEN))
        tensors[f"{layer}mlp.up_proj.weight"] = np.zeros((INTERMEDIATE, HIDDEN))
        tensors[f"{layer}mlp.down_proj.weight"] = np.zeros((HIDDEN, INTERMEDIATE))
        tensors[f"{layer}input_layernorm.weight"] = np.ones(HIDDEN)
        tensors[f"{layer}post_attention_layernorm.weight"] = np.ones(HIDDEN)
    return {name: np.ascontiguousarray(t, dtype=np.float32) for name, t in tensors.items()}
