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

import orjson

from . import circuit, words
from .circuit import (
    HEAD_DIM,
    HEADS,
    HIDDEN,
    INTERMEDIATE,
    MAX_POSITIONS,
    RMS_EPS,
    ROPE_THETA,
    build_weights,
)
from .words import (
    BOS,
    END_OF_TURN,
    EOS,
    FILLER_WORDS,
    PAD,
    SPECIAL_TOKENS,
    START_OF_TURN,
    TRIGGER_WORDS,
)

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["DEFAULT_DIR", "FILLER_WORDS", "TRIGGER_WORDS", "build_test_model"]

# Bump when the output changes; the marker also holds a hash of the builder's source.
BUILDER_VERSION = "devmodel-2"
MARKER_FILE = ".devmodel-build"
# Where the demo, the bench and the dummy-model script build it when given no model.
DEFAULT_DIR = Path(".cache/test-model")

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

# Vocabulary the BPE trainer aims for, added tokens included.
TARGET_VOCAB = 1024

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
    sources = hashlib.sha256()
    for module in (__file__, circuit.__file__, words.__file__):
        sources.update(Path(module).read_bytes())
    source = sources.hexdigest()[:16]
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
