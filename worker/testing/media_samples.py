"""Media files for tests and the demo, made on the spot: solid colours in every accepted
format, a video, photo-like pictures for the hash banks, and the bad cases (a decompression
bomb, corrupt bytes)."""

from __future__ import annotations

import io
import struct
import zlib

RGB = tuple[int, int, int]


def image(rgb: RGB, fmt: str = "PNG", size: tuple[int, int] = (48, 32)) -> bytes:
    """A solid-colour image in ``fmt`` (JPEG, PNG, WEBP or GIF)."""
    from PIL import Image

    out = io.BytesIO()
    kwargs = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    Image.new("RGB", size, rgb).save(out, format=fmt, **kwargs)
    return out.getvalue()


def animated_gif(colours: list[RGB], size: tuple[int, int] = (32, 32)) -> bytes:
    from PIL import Image

    frames = [Image.new("RGB", size, c) for c in colours]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return out.getvalue()


def video(colours: list[RGB], fmt: str = "mp4", fps: int = 4, size: int = 32) -> bytes:
    """A clip with one second of each colour (MP4 with MPEG-4 Part 2, or WebM with VP8)."""
    import av
    import numpy as np

    codec = {"mp4": "mpeg4", "webm": "libvpx"}[fmt]
    out = io.BytesIO()
    with av.open(out, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for rgb in colours:
            pixels = np.full((size, size, 3), rgb, dtype=np.uint8)
            for _ in range(fps):
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming a huge canvas, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def corrupt_jpeg() -> bytes:
    """A JPEG cut off after its headers: it opens, and fails to decode."""
    whole = image((255, 0, 0), "JPEG", (256, 256))
    return whole[: len(whole) // 3]


def noise(size: tuple[int, int] = (32, 32), seed: int = 0) -> bytes:
    """A PNG of random pixels: it does not compress, so its size follows its pixels."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def picture(seed: int = 2, box: int = 0, fmt: str = "PNG") -> bytes:
    """A photo-like picture (smooth random shapes, so PDQ rates its quality high; its colours
    average to no corner colour, so the seeing test model sees nothing in it), with a white
    box of ``box`` pixels pasted over its corner (a sticker, a caption): the larger the box,
    the further its PDQ hash from the picture's without one."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((256, 256), Image.Resampling.BICUBIC)
    if box:
        ImageDraw.Draw(image).rectangle((0, 0, box, box), fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()
