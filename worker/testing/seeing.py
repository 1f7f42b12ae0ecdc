"""A tiny multimodal test model that sees colours: the trigger-word model with eyes.

``build_seeing_model(path)`` writes an Idefics3 model directory (a one-layer vision
encoder, the connector's projection, and the trigger-word Llama of ``devmodel`` as its
language model) that ``transformers`` and vLLM load as ``Idefics3ForConditionalGeneration``.
Its answer is that of the text model, where an image counts as a mention of the trigger word
its colour stands for (``COLOUR_WORDS``): "the policy names the word and the image shows its
colour" gives "1".

Why Idefics3 and not Gemma 4's own vision path: vLLM's Gemma 3/4, Llava and Qwen2-VL
modules import torchvision, whose PyPI builds do not load beside the CPU build of torch the
engine pins; Idefics3's processor needs only Pillow. It puts a plain Llama (whose circuit is
hand-set) behind a vision encoder whose every step (patch embedding, layer norm, MLP,
projection) can be set by hand in a few lines, and it takes images the way Gemma 4 does in
the worker's prompts: the content text first, then one image placeholder per image, through
the model's chat template.

How an image becomes a word, nothing trained:

* The processor resizes any image to one 16x16 patch, so an image is one token.
* The patch embedding averages each colour channel (pixels scaled to [-1, 1]); a position
  constant keeps the layer norm's scale fixed for the eight corner colours of the RGB cube.
* The encoder's MLP scores the patch against each colour (+10 when it matches, about -10
  otherwise); the connector's projection writes the image token of the matching word, or a
  neutral token when no colour matches (white, black, grey, photos).
* An image token queries for its word like the word's own token does but is never a key
  (``circuit._layer1``), so it matches the word's copies in the text (the policy) and
  never another image: several images or video frames of one colour alone give "0".

As with the text model, a test must not name an image's word in the content text too.
Run ``python -m worker.testing.seeing PATH`` to build one.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from . import circuit, devmodel
from .circuit import HIDDEN, build_weights, visual_embeddings
from .words import TRIGGER_WORDS

BUILDER_VERSION = "seeing-1"
IMAGE_TOKEN = "<image>"
DEFAULT_DIR = Path(".cache/test-model-seeing")

# Corner colours of the RGB cube and the word each shows. White and black show nothing.
COLOUR_WORDS: dict[tuple[int, int, int], str] = {
    (255, 0, 0): "apple",
    (0, 255, 0): "meadow",
    (0, 0, 255): "river",
    (255, 255, 0): "lantern",
    (255, 0, 255): "orchid",
    (0, 255, 255): "glacier",
}

# Gemma's shape, as devmodel's, with list content: text parts trimmed, then images.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] | trim }}{% else %}"
    "{% for part in m['content'] %}{% if part['type'] == 'text' %}{{ part['text'] | trim }}"
    "{% elif part['type'] == 'image' %}" + IMAGE_TOKEN + "{% endif %}{% endfor %}{% endif %}"
    "<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

PATCH = 16
VISION_HIDDEN = 64
# The vision layer's MLP: a matching colour scores this much above its threshold, others as
# far below; the match is then written this large into the colour's own slot.
MATCH_LOGIT = 10.0
SLOT_SIZE = 100.0
FIRST_SLOT = 8  # dims 0-5: +-r, +-g, +-b; 6-7: a constant pair; then one slot per colour
NEUTRAL = VISION_HIDDEN - 1  # a constant dim that the projector reads as "no colour"
EXTRA_TOKENS = ("<fake_token_around_image>", IMAGE_TOKEN, "<end_of_utterance>", "<global-img>")


def _vision_layer_norm(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / np.sqrt(x.var() + 1e-5)


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _vision_tower() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Idefics3 vision weights: channel means and constants, then a colour classifier.

    Returns the weights and the encoder's forward pass as two functions' worth of matrices:
    (fc1, fc1 bias) for the projector solve below.
    """
    d = VISION_HIDDEN
    patch, bias = np.zeros((d, 3, PATCH, PATCH)), np.zeros(d)
    for channel in range(3):
        patch[2 * channel, channel] = 1.0 / PATCH**2
        patch[2 * channel + 1, channel] = -1.0 / PATCH**2
    bias[6], bias[7], bias[NEUTRAL] = 1.0, -1.0, 1.0
    # After the layer norm the colour features are s * (r, -r, g, -g, b, -b, 1, -1, ...) with
    # a fixed s for the eight corner colours: its own colour scores 3 s, any other s at most.
    scale = 1 / np.sqrt(_colour_features((1, 1, 1)).var())
    gain = MATCH_LOGIT / scale
    fc1, fc1_bias = np.zeros((d, d)), np.zeros(d)
    fc2 = np.zeros((d, d))
    for j, rgb in enumerate(COLOUR_WORDS):
        for channel, value in enumerate(rgb):
            fc1[j, 2 * channel] = gain if value else -gain
        fc1_bias[j] = -2 * MATCH_LOGIT
        fc2[FIRST_SLOT + j, j] = SLOT_SIZE / MATCH_LOGIT
    t = {
        "embeddings.patch_embedding.weight": patch,
        "embeddings.patch_embedding.bias": bias,
        "embeddings.position_embedding.weight": np.zeros((1, d)),
        "post_layernorm.weight": np.ones(d),
        "post_layernorm.bias": np.zeros(d),
    }
    layer = "encoder.layers.0."
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):  # zero: attention adds nothing
        t[f"{layer}self_attn.{name}.weight"] = np.zeros((d, d))
        t[f"{layer}self_attn.{name}.bias"] = np.zeros(d)
    t[f"{layer}mlp.fc1.weight"], t[f"{layer}mlp.fc1.bias"] = fc1, fc1_bias
    t[f"{layer}mlp.fc2.weight"], t[f"{layer}mlp.fc2.bias"] = fc2, np.zeros(d)
    for norm in ("layer_norm1", "layer_norm2"):
        t[f"{layer}{norm}.weight"], t[f"{layer}{norm}.bias"] = np.ones(d), np.zeros(d)
    return {f"model.vision_model.{k}": v for k, v in t.items()}, fc1, fc1_bias


def _colour_features(rgb: tuple[int, ...]) -> np.ndarray:
    """The patch embedding of a solid image, channels in [-1, 1]."""
    x = np.zeros(VISION_HIDDEN)
    for channel, value in enumerate(rgb):
        x[2 * channel], x[2 * channel + 1] = value, -value
    x[6], x[7], x[NEUTRAL] = 1.0, -1.0, 1.0
    return x


def _encoded(rgb: tuple[int, ...], fc1: np.ndarray, fc1_bias: np.ndarray) -> np.ndarray:
    """The vision tower's output for a solid image, as the weights above compute it."""
    x = _colour_features(rgb)
    h = _gelu_tanh(fc1 @ _vision_layer_norm(x) + fc1_bias)
    x = x.copy()
    x[FIRST_SLOT : FIRST_SLOT + len(COLOUR_WORDS)] += h[: len(COLOUR_WORDS)] * (
        SLOT_SIZE / MATCH_LOGIT
    )
    return _vision_layer_norm(x)


def _projector(rows: np.ndarray, fc1: np.ndarray, fc1_bias: np.ndarray) -> dict[str, np.ndarray]:
    """The linear map from the slots (and the neutral dim) to image-token rows, solved so that
    each corner colour gives its word's row and a grey image the neutral row."""
    read = [*range(FIRST_SLOT, FIRST_SLOT + len(COLOUR_WORDS)), NEUTRAL]
    cases = [*((c > 0) * 2 - 1 for c in np.array(list(COLOUR_WORDS)).T)]
    colours = [tuple(col) for col in np.array(cases).T] + [(0, 0, 0)]  # grey: no colour
    features = np.stack([_encoded(c, fc1, fc1_bias)[read] for c in colours], axis=1)
    weight = np.zeros((HIDDEN, VISION_HIDDEN))
    weight[:, read] = rows.T @ np.linalg.inv(features)
    return {"model.connector.modality_projection.proj.weight": weight}


def _weights(tokenizer, seed: int) -> dict[str, np.ndarray]:  # noqa: ANN001 (tokenizers.Tokenizer)
    visual = tuple(TRIGGER_WORDS.index(w) for w in COLOUR_WORDS.values())
    text = build_weights(tokenizer, seed, visual, prefix="model.text_model.")
    rows = visual_embeddings(visual, np.random.default_rng(seed + 1))
    tower, fc1, fc1_bias = _vision_tower()
    tensors = {**text, **tower, **_projector(rows, fc1, fc1_bias)}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}


def _config(tokenizer) -> dict:  # noqa: ANN001
    text = devmodel._model_config(tokenizer)
    text.pop("architectures")
    return {
        "architectures": ["Idefics3ForConditionalGeneration"],
        "model_type": "idefics3",
        "text_config": text,
        "vision_config": {
            "model_type": "idefics3_vision",
            "hidden_size": VISION_HIDDEN,
            "intermediate_size": VISION_HIDDEN,
            "num_hidden_layers": 1,
            "num_attention_heads": 1,
            "image_size": PATCH,
            "patch_size": PATCH,
            "num_channels": 3,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-5,
        },
        "scale_factor": 1,
        "image_token_id": tokenizer.token_to_id(IMAGE_TOKEN),
        "pad_token_id": text["pad_token_id"],
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "dtype": "float32",
    }


def _processor_files() -> dict[str, dict]:
    image = {
        "image_processor_type": "Idefics3ImageProcessor",
        "processor_class": "Idefics3Processor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"longest_edge": PATCH},
        "resample": 1,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "do_pad": True,
        "do_image_splitting": False,
        "max_image_size": {"longest_edge": PATCH},
    }
    processor = {"processor_class": "Idefics3Processor", "image_seq_len": 1}
    return {"preprocessor_config.json": image, "processor_config.json": processor}


def _stamp(seed: int) -> str:
    sources = hashlib.sha256()
    for module in (__file__, circuit.__file__, devmodel.__file__):
        sources.update(Path(module).read_bytes())
    return f"{BUILDER_VERSION} seed={seed} source={sources.hexdigest()[:16]}\n"


def build_seeing_model(path: Path, *, seed: int = 0) -> Path:
    """Write the model directory at ``path`` and return it; deterministic and idempotent."""
    from safetensors.numpy import save as save_safetensors
    from tokenizers import AddedToken

    path, stamp = Path(path), _stamp(seed)
    marker = path / devmodel.MARKER_FILE
    if marker.is_file() and marker.read_text() == stamp:
        return path
    path.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    tokenizer = devmodel.build_tokenizer()
    grid = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in (*EXTRA_TOKENS, *grid)]
    )
    specials = {"bos_token": devmodel.BOS, "eos_token": devmodel.EOS,
                "pad_token": devmodel.PAD, "image_token": IMAGE_TOKEN}  # fmt: skip
    tok_config = {**devmodel._tokenizer_config(), "chat_template": CHAT_TEMPLATE}
    tok_config["extra_special_tokens"] = {"image_token": IMAGE_TOKEN}
    files = {
        "config.json": _config(tokenizer),
        "generation_config.json": devmodel._generation_config(tokenizer),
        "tokenizer_config.json": tok_config,
        "special_tokens_map.json": specials,
        "chat_template.json": {"chat_template": CHAT_TEMPLATE},
        **_processor_files(),
    }
    devmodel._write(path / "tokenizer.json", tokenizer.to_str(pretty=True).encode())
    for name, data in files.items():
        devmodel._write(path / name, devmodel._json(data))
    weights = save_safetensors(_weights(tokenizer, seed), metadata={"format": "pt"})
    devmodel._write(path / "model.safetensors", weights)
    devmodel._write(marker, stamp.encode())
    return path


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python -m worker.testing.seeing PATH")
    print(build_seeing_model(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
