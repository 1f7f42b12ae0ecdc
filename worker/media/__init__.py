"""Images and video on events: references, the guarded fetch, decoding, and the step joining them.

``refs``: what an event's ``media`` field holds and what a fetched item becomes
(``FetchedMedia``: its bytes, their sha256 and the decoded frames); ``guard``: which URLs and
addresses may be fetched (pure); ``fetch``: the download itself, hop by hop; ``decode``:
Pillow and PyAV behind size, pixel, length and frame limits (pure, run off the event loop);
``step``: one event's media fetched and decoded, with retries, bounds and metrics.
"""

from .refs import FetchedMedia, MediaRef, MediaRejected, MediaUnavailable

__all__ = ["FetchedMedia", "MediaRef", "MediaRejected", "MediaUnavailable"]
