"""vLLM's token-in endpoint as the remote classifier speaks it for items with media.

A media prompt goes to ``POST /inference/v1/generate`` as the worker's own token ids (the
text prompt's ids, then ``prompts.media_suffix``: one image placeholder per frame) with the
frames as ``content_parts``. The server builds the engine input exactly as the in-process
engine does (``TokensPrompt`` with ``multi_modal_data``, through the same renderer, which
expands each placeholder into the image's tokens), so prompts and scores are the in-process
engine's. Frames travel as uncompressed BMP ``data:`` URIs, so the server sees the worker's
decoded pixels, never a re-decode of the original file (which could differ: another
decoder, EXIF rotation, its own video sampling). BMP rather than PNG: both are lossless,
but BMP costs the worker about 6 ms of CPU for a 1024x1024 frame (PNG 50 to 100 ms) and
the server's single front-end process as little to read, for about 1.7 times PNG's bytes
on a photo (4.2 MB in base64).

Why not ``/v1/chat/completions``: there the server renders and tokenizes the message text
itself, which turns special-token text in an item's content into real special tokens (the
worker keeps it plain text) and cannot carry a prompt the worker truncated. Token ids keep
media prompts identical to text prompts and to the in-process engine's.

vLLM serves this endpoint only when started with ``--enable-scale-out``. Pure functions
and the frame encoding, so every reading of a reply is unit-tested.
"""

from __future__ import annotations

import base64
import io
import weakref
from collections.abc import Sequence
from typing import Any

from . import EngineError, Score
from .openai_api import SCALE_OUT_FLAG, p_yes_of

GENERATE_PATH = "/inference/v1/generate"


def generate_body(
    model: str, prompt: list[int], parts: list[dict[str, str]], no: int, yes: int
) -> dict[str, Any]:
    """One media prompt; asks what ``completion_body`` asks, with the frames attached."""
    return {
        "model": model,
        "token_ids": prompt,
        "content_parts": parts,
        "sampling_params": {
            "max_tokens": 1,
            "temperature": 0.0,
            "allowed_token_ids": [no, yes],
            "logprobs": 2,
            "detokenize": False,
        },
        "output_mode": "tokens",
    }


def score_generate_reply(reply: Any, no: int, yes: int, prompt_length: int) -> Score:
    """P("1") from a token-in reply, computed as the in-process engine computes it."""
    try:
        [choice] = reply["choices"]
        top = choice["logprobs"]["content"][0]["top_logprobs"]
        logprobs = {int(entry["token_id"]): float(entry["logprob"]) for entry in top}
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise EngineError(f"engine server returned no logprobs: {repr(reply)[:300]}") from exc
    details = (reply.get("usage") or {}).get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens")
    return Score(
        p_yes=p_yes_of(logprobs, no, yes),
        prompt_tokens=prompt_length,
        cached_tokens=cached if isinstance(cached, int) else None,
    )


def media_refusal(status: int, body: str, url: str) -> str | None:
    """Start-up: why a server answering the media check this way takes no media, or None
    when the status means something else (out of reach, a bad key)."""
    if SCALE_OUT_FLAG in body or status == 404:
        return (
            f"engine server {url} does not serve {GENERATE_PATH}, which media items need: "
            f"start the servers with {SCALE_OUT_FLAG}"
        )
    if status in (400, 422):
        return f"engine server {url} refused a prompt with an image: {body[:300]}"
    return None


# Per frame (a PIL image, alive while its item is being classified): its content part, so
# an item scored against several policies is encoded once.
_parts: dict[int, tuple[weakref.ref[Any], dict[str, str]]] = {}


def image_parts(frames: Sequence[Any]) -> list[dict[str, str]]:
    """Each frame as a content part: a BMP ``data:`` URI of its RGB pixels. Blocking (a few
    milliseconds per megapixel): call it off the event loop."""
    return [_image_part(frame) for frame in frames]


def _image_part(frame: Any) -> dict[str, str]:
    key = id(frame)
    known = _parts.get(key)
    if known is not None and known[0]() is frame:
        return known[1]
    buffer = io.BytesIO()
    frame.save(buffer, format="BMP")
    uri = "data:image/bmp;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    part = {"type": "image_url", "url": uri}
    _parts[key] = (weakref.ref(frame, lambda _, key=key: _forget(key)), part)
    return part


def _forget(key: int) -> None:
    known = _parts.get(key)
    if known is not None and known[0]() is None:
        del _parts[key]
