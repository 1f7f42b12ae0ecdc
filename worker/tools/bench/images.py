"""The image workload: one JPEG per event, whose label the seeing test model makes known.

Every event carries one image by URL and no text, so its prompt is the card's with
``[image]`` as the content and the image attached after it. Image ``n`` is a solid colour
(the corner colours of ``worker.testing.seeing`` and white, which shows nothing; see
``image_colours``) with a faint strip of marks that spell ``n``: every image has bytes of
its own, so neither the verdict cache nor vLLM's processor cache answers a repeat, and each
costs a whole fetch and decode. Files, events and expected labels follow from the config
alone, so the bench process and the engine-limit process build the same ones.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import orjson

from ...catalog import compile_catalog
from ...config import RoutingSettings
from ...policies import load_policies
from ...prompts import Tokenizer, assemble, media_suffix, tokenize_contents
from ...testing.seeing import COLOUR_WORDS
from ...testing.words import TRIGGER_WORDS
from .config import BenchConfig
from .workload import Event, Workload, make_events, repeats

TAG = "img"
COLOURS: tuple[tuple[int, int, int], ...] = (*COLOUR_WORDS, (255, 255, 255))
MARK_BITS = 16


@dataclass(frozen=True)
class ImagePrompt:
    event: str
    policy: str
    ids: list[int]
    file: str  # the image's file name under the images folder
    colour: tuple[int, int, int]


def image_name(n: int) -> str:
    return f"{TAG}-{n}.jpg"


def marked_jpeg(n: int, colour: tuple[int, int, int], size: int) -> bytes:
    """Image ``n``: a solid ``colour``, and ``n`` in grey marks along the top row."""
    from PIL import Image

    image = Image.new("RGB", (size, size), colour)
    width = max(1, size // 128)
    for bit in range(MARK_BITS):
        if n >> bit & 1:
            for x in range(bit * 2 * width, (bit * 2 + 1) * width):
                image.putpixel((x % size, 0), (128, 128, 128))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def images_dir(config: BenchConfig) -> Path:
    return config.workdir / "images"


def write_images(config: BenchConfig, colours: list[tuple[int, int, int]]) -> Path:
    """Every event's image, as files in ``images_dir``."""
    folder = images_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    for n, colour in enumerate(colours):
        (folder / image_name(n)).write_bytes(marked_jpeg(n, colour, config.image_size))
    return folder


def image_workload(config: BenchConfig, tokenizer: Tokenizer, base_url: str) -> Workload:
    """The events (images by URL under ``base_url``) and each one's expected label."""
    registry = load_policies(config.policies_dir)
    catalog = compile_catalog(registry, tokenizer, config.max_model_len, RoutingSettings())
    count = config.image_events
    plain = make_events(config, list(registry.default), ["[image]"] * count, TAG)
    events = [_with_image(e, n, base_url) for n, e in enumerate(plain)]
    workload = Workload(catalog, ["[image]"] * count, events)
    labels: dict[str, int] = {}
    for prompt in image_prompts(workload, tokenizer):
        labels[prompt.event] = labels.get(prompt.event, 0) | expected_label(prompt, tokenizer)
    return Workload(catalog, workload.contents, events, expected=labels)


def image_colours(workload: Workload) -> list[tuple[int, int, int]]:
    """Each event's colour: for a third of the events, one that the event's first policy
    names (when it names one: both labels occur), else the colours in turn."""
    colours = []
    for n, event in enumerate(workload.events):
        [first, *_] = workload.catalog.resolve(event.policies[:1])
        words = set(re.findall(r"[a-z]+", first.policy.text.lower()))
        named = [rgb for rgb, word in COLOUR_WORDS.items() if word in words]
        colours.append(named[0] if n % 3 == 0 and named else COLOURS[n % len(COLOURS)])
    return colours


def _with_image(event: Event, n: int, base_url: str) -> Event:
    value = orjson.loads(event.value)
    del value["content"]
    value["media"] = [{"type": "image", "url": f"{base_url}/{image_name(n)}"}]
    return Event(event.id, event.policies, orjson.dumps(value))


def image_prompts(workload: Workload, tokenizer: Tokenizer) -> list[ImagePrompt]:
    """Every (event, policy) prompt as the worker's scoring core builds it for one image."""
    [content] = tokenize_contents(tokenizer, ["[image]"])
    suffix = media_suffix(tokenizer, 1)
    colours = image_colours(workload)
    out = []
    for n, event in enumerate(workload.events):
        for entry in workload.catalog.resolve(event.policies):
            ids = assemble(entry.prompt, content, "truncate", suffix)
            out.append(ImagePrompt(event.id, entry.policy.id, ids, image_name(n), colours[n]))
    return out


def expected_label(prompt: ImagePrompt, tokenizer: Tokenizer) -> int:
    """The seeing model's answer: its image counts as one more mention of its colour's word,
    so "1" exactly when some trigger word then occurs twice (see worker.testing.seeing)."""
    trigger_ids = {tokenizer.encode(w, add_special_tokens=False)[0] for w in TRIGGER_WORDS}
    word = COLOUR_WORDS.get(prompt.colour)
    seen = [*prompt.ids]
    if word is not None:
        seen.append(tokenizer.encode(word, add_special_tokens=False)[0])
    return int(repeats(seen, trigger_ids))


def photo_jpeg(size: int) -> bytes:
    """A photo-like JPEG (gradients and noise, quality 85): what decoding costs in practice."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    pixels = np.stack([(x / 4) % 256, (y / 4) % 256, ((x + y) / 8) % 256], -1)
    pixels = np.clip(pixels + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=85)
    return out.getvalue()


def accepts_images(model: str) -> bool:
    """Whether the model directory's config names a vision tower (read, nothing loaded)."""
    try:
        config = orjson.loads((Path(model) / "config.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return True  # a hub id: the engine decides, and says so
    return "vision_config" in config
