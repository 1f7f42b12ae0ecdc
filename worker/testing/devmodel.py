"""A tiny, hand-wired Llama model that follows a policy, for tests without a model hub.

``build_test_model(path)`` writes a Hugging Face model directory (config, safetensors weights,
byte-level BPE tokenizer with a Gemma-like chat template) that both ``transformers`` and vLLM
load. Its answer to the worker's prompt is ``"1"`` exactly when some word of
``TRIGGER_WORDS`` occurs twice in the prompt, which, for prompts where each trigger word appears
at most once in the policy and at most once in the content, means: "the content mentions a
trigger word that the policy names". So a test can flip a verdict by changing only the policy.

Nothing is trained. The weights are set by hand to a two-layer circuit:

* Layer 1, per trigger word: every token attends to ``<bos>`` (the sink) and to every copy of
  itself, with equal scores. The share of attention left on ``<bos>`` is 1/2 at the first copy
  of a word and 1/3 at the second, and that share is written into the residual stream.
  Counting this way avoids having to stop a token from matching itself.
* Layer 2: every position attends to trigger tokens whose ``<bos>`` share is below 5/12 (second
  copies), or to ``<bos>`` when there is none, and copies a "repeat" feature from them.
* The output head turns the "repeat" feature into the logit gap between "1" and "0".

Queries and keys only use the slowest-rotating RoPE dimensions, and ``rope_theta`` is huge, so
matches work at any distance up to ``max_position_embeddings``. Every token embedding has the
same norm, so the first RMSNorm is a constant; the later ones only shift scores slightly.

Trigger words are added tokens with ``single_word=True``: a trigger is its one token when it
stands as a whole lowercase word (``"apple"``, ``" apple."``, ``"(apple)"``), whatever the
preceding text, and is ordinary BPE pieces inside other words (``"apples"``, ``"Apple"``).

Run ``python -m worker.testing.devmodel PATH`` to build one.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# Bump when the output changes; the marker also holds a hash of this file's source.
BUILDER_VERSION = "devmodel-2"
MARKER_FILE = ".devmodel-build"
# Where the demo, the bench and the dummy-model script build it when given no model.
DEFAULT_DIR = Path(".cache/test-model")

# Each is one token of the tokenizer as a whole lowercase word. None occurs in the worker's
# instruction, the chat template, FILLER_WORDS, or usual policy phrasing.
TRIGGER_WORDS: tuple[str, ...] = (
    "apple", "river", "falcon", "copper", "meadow", "lantern", "glacier", "violin",
    "harbor", "pepper", "tiger", "orchid", "canyon", "velvet", "rocket", "walnut",
    "island", "marble", "thunder", "saddle", "cactus", "pebble", "comet", "anchor",
    "juniper", "mango", "beacon", "otter", "quartz", "tulip", "ember", "fjord",
    "lobster", "compass", "maple", "nectar", "parrot", "summit", "willow", "zebra",
)  # fmt: skip

# Ordinary words: the tokenizer's training text, and safe filler for test contents.
FILLER_WORDS: tuple[str, ...] = tuple(
    """
    the of and to in is that it for was on are as with his they at be this from have or by
    one had not but what all were when we there can an your which their said if do will each
    about how up out them then she many some so these would other into has more her two like
    him see time could no make than first been its who now people my made over did down only
    way find use may water long little very after words called just where most know get
    through back much before go good new write our used me man too any day same right look
    think also around another came come work three word must because does part even place well
    such here take why things help put years different away again off went old number great
    tell men say small every found still between name should home big give air line set own
    under read last never us left end along while might next sound below saw something thought
    both few those always looked show large often together asked house world going want school
    important until form food keep children feet land side without boy once animals life enough
    took four head above kind began almost live page got earth need far hand high year mother
    light country father let night picture being study second soon story since white ever paper
    hard near sentence better best across during today however sure knew try told young sun
    thing whole hear example heard several change answer room sea against top turned learn point
    city play toward five himself usually money seen car morning given body family later
    """.split()
)

PAD, BOS, EOS, START_OF_TURN, END_OF_TURN = (
    "<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>",
)  # fmt: skip
SPECIAL_TOKENS = (PAD, BOS, EOS, START_OF_TURN, END_OF_TURN)

# Gemma's shape, trim included: the worker's prompts are spliced the way Gemma's are.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
    "{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

# Text the prompts are made of besides content, so that it tokenizes compactly.
_PROMPT_TEXT = (
    "Examine the given POLICY and determine if the given CONTENT meets the criteria for ANY "
    'of the LABELS. Answer "1" if yes, and "0" if no.\n\n\nPOLICY\n======\n\n'
    "Flag content that mentions any of: a, b.\n\n\nCONTENT\n=======\n\n"
    "Content meets this policy if it refers to a or b.\nuser\nmodel\n"
)

# --- Model shape -------------------------------------------------------------------------

HIDDEN = 128
HEADS = 2
HEAD_DIM = 64
INTERMEDIATE = 64  # the MLPs are all zeros; they take no part in the circuit
MAX_POSITIONS = 8192
ROPE_THETA = 1e12
RMS_EPS = 1e-6
TARGET_VOCAB = 1024

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


# --- Tokenizer ---------------------------------------------------------------------------


def _training_text() -> Iterator[str]:
    """A fixed, English-ish corpus: the prompt scaffolding plus random filler sentences."""
    rng = random.Random(20240601)
    punctuation = [".", ",", "!", "?", ":", ";", ""]
    for _ in range(50):
        yield _PROMPT_TEXT
    for _ in range(3000):
        words = [rng.choice(FILLER_WORDS) for _ in range(rng.randint(3, 20))]
        words[0] = words[0].capitalize()
        yield " ".join(words) + rng.choice(punctuation) + rng.choice([" ", "\n", "\n\n"])
    yield "0123456789 " * 20


def build_tokenizer() -> Tokenizer:
    """Byte-level BPE, so any text encodes; specials first, trigger words as whole words."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TARGET_VOCAB - len(TRIGGER_WORDS),
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_text(), trainer)
    # Added tokens are cut out before BPE, so a trigger is the same single token whether it
    # follows a space, a newline, punctuation or nothing. single_word keeps "apples" apart.
    tokenizer.add_tokens(
        [AddedToken(w, single_word=True, normalized=False, special=False) for w in TRIGGER_WORDS]
    )
    bos_id = tokenizer.token_to_id(BOS)
    # Like Gemma: plain encoding prepends <bos>; the chat template writes it itself, so
    # rendered chats are encoded with add_special_tokens=False.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    _check_tokenizer(tokenizer)
    return tokenizer


def _check_tokenizer(tokenizer: Tokenizer) -> None:
    """Fail the build, not a test far away, if a token the circuit relies on is not one."""
    for text in ("0", "1", *TRIGGER_WORDS):
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        if len(ids) != 1:
            raise RuntimeError(f"{text!r} is {len(ids)} tokens, must be one")
    for word in TRIGGER_WORDS:
        token = tokenizer.token_to_id(word)
        in_text = tokenizer.encode(f"so: {word}, and\n{word}.", add_special_tokens=False).ids
        if in_text.count(token) != 2:
            raise RuntimeError(f"trigger word {word!r} is not its own token inside text")
        if word in FILLER_WORDS or word in _PROMPT_TEXT or word in CHAT_TEMPLATE:
            raise RuntimeError(f"trigger word {word!r} occurs in ordinary text")


def _tokenizer_config() -> dict:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MAX_POSITIONS,
        "padding_side": "left",
        "chat_template": CHAT_TEMPLATE,
    }


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


def _embeddings(vocab: int, bos: int, triggers: list[int], rng: np.random.Generator) -> np.ndarray:
    """Features in the first dimensions; filler brings every row to norm sqrt(HIDDEN), so the
    first RMSNorm divides by exactly 1."""
    emb = np.zeros((vocab, HIDDEN), dtype=np.float64)
    emb[:, CONST] = 1.0
    emb[bos, IS_BOS] = 1.0
    for i, token in enumerate(triggers):
        emb[token, IS_TRIGGER] = 1.0
        emb[token, FIRST_CODE + i] = 1.0
    filler = rng.standard_normal((vocab, HIDDEN - FIRST_FILLER))
    filler /= np.linalg.norm(filler, axis=1, keepdims=True)
    room = HIDDEN - (emb**2).sum(axis=1, keepdims=True)
    emb[:, FIRST_FILLER:] = filler * np.sqrt(room)
    return emb


def _layer1() -> dict[str, np.ndarray]:
    """Per head: sink and same-word keys score SINK_LOGIT; the value is "this is <bos>"."""
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


def build_weights(tokenizer: Tokenizer, seed: int) -> dict[str, np.ndarray]:
    """All tensors, float32, under the names LlamaForCausalLM uses."""
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    ids = [tokenizer.token_to_id(w) for w in TRIGGER_WORDS]
    no, yes = tokenizer.token_to_id("0"), tokenizer.token_to_id("1")
    rng = np.random.default_rng(seed)
    tensors = {
        "model.embed_tokens.weight": _embeddings(vocab, tokenizer.token_to_id(BOS), ids, rng),
        "lm_head.weight": _lm_head(vocab, no, yes, rng),
        "model.norm.weight": np.ones(HIDDEN),
    }
    for n, attention in enumerate((_layer1(), _layer2())):
        prefix = f"model.layers.{n}."
        for name, weight in attention.items():
            tensors[f"{prefix}self_attn.{name}.weight"] = weight
        tensors[f"{prefix}mlp.gate_proj.weight"] = np.zeros((INTERMEDIATE, HIDDEN))
        tensors[f"{prefix}mlp.up_proj.weight"] = np.zeros((INTERMEDIATE, HIDDEN))
        tensors[f"{prefix}mlp.down_proj.weight"] = np.zeros((HIDDEN, INTERMEDIATE))
        tensors[f"{prefix}input_layernorm.weight"] = np.ones(HIDDEN)
        tensors[f"{prefix}post_attention_layernorm.weight"] = np.ones(HIDDEN)
    return {name: np.ascontiguousarray(t, dtype=np.float32) for name, t in tensors.items()}


# --- Files -------------------------------------------------------------------------------


def _model_config(tokenizer: Tokenizer) -> dict:
    ids = {t: tokenizer.token_to_id(t) for t in (PAD, BOS, EOS)}
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": 2,
        "num_attention_heads": HEADS,
        "num_key_value_heads": HEADS,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "max_position_embeddings": MAX_POSITIONS,
        "rms_norm_eps": RMS_EPS,
        # Both spellings: transformers 5 reads rope_parameters, older readers rope_theta.
        "rope_theta": ROPE_THETA,
        "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA},
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "dtype": "float32",
        "use_cache": True,
        "bos_token_id": ids[BOS],
        "eos_token_id": ids[EOS],
        "pad_token_id": ids[PAD],
    }


def _generation_config(tokenizer: Tokenizer) -> dict:
    return {
        "bos_token_id": tokenizer.token_to_id(BOS),
        "eos_token_id": [tokenizer.token_to_id(EOS), tokenizer.token_to_id(END_OF_TURN)],
        "pad_token_id": tokenizer.token_to_id(PAD),
    }


def _build_stamp(seed: int) -> str:
    """Identifies what this code would write; a directory holding it needs no rebuild."""
    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return f"{BUILDER_VERSION} seed={seed} source={source}\n"


MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def _write(path: Path, data: bytes) -> None:
    """Write-then-rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _json(obj: dict) -> bytes:
    return orjson.dumps(
        obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
    )


def _is_built(path: Path, stamp: str) -> bool:
    marker = path / MARKER_FILE
    return (
        marker.is_file()
        and marker.read_text() == stamp
        and all((path / name).is_file() for name in MODEL_FILES)
    )


def build_test_model(path: Path, *, seed: int = 0) -> Path:
    """Write the model directory at ``path`` (created if missing) and return ``path``.

    Deterministic: the same seed gives byte-identical files. Idempotent: a directory already
    stamped by this builder version with this seed is returned as it is.
    """
    from safetensors.numpy import save as save_safetensors

    path = Path(path)
    stamp = _build_stamp(seed)
    if _is_built(path, stamp):
        return path
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER_FILE
    marker.unlink(missing_ok=True)  # stale or partial: rebuild everything

    tokenizer = build_tokenizer()
    weights = build_weights(tokenizer, seed)
    specials = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD,
                "additional_special_tokens": [START_OF_TURN, END_OF_TURN]}  # fmt: skip
    _write(path / "tokenizer.json", tokenizer.to_str(pretty=True).encode())
    _write(path / "tokenizer_config.json", _json(_tokenizer_config()))
    _write(path / "special_tokens_map.json", _json(specials))
    _write(path / "config.json", _json(_model_config(tokenizer)))
    _write(path / "generation_config.json", _json(_generation_config(tokenizer)))
    _write(path / "model.safetensors", save_safetensors(weights, metadata={"format": "pt"}))
    _write(marker, stamp.encode())  # last: its presence means the rest is complete
    return path


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python -m worker.testing.devmodel PATH")
    print(build_test_model(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
