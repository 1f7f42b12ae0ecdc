"""moderation-worker: classifies a stream of content events against written policies.

The serving path, in the order data flows through it:

- ``intake``: fetch within the in-flight bound, decode, hand on items (``undecodable`` for
  records the Kafka client cannot read); ``events``: the wire models.
- ``batching``: micro-batches. ``classify``: a batch scored against its policies
  (``catalog``, ``policies``, ``prompts``, ``engine``), thresholds and routes (``routing``).
- ``outcomes``: what each item produces, a verdict with its review or audit copy
  (``audit``) or a dead letter (pure); ``publish``: sending it and deciding what a send
  error means.
- ``commits`` and ``offsets``: committing the contiguous prefix of finished offsets.
- ``pipeline``: the ``Worker`` wiring these parts; ``app``: start-up order and shutdown,
  with ``preflight`` checks before the model loads; ``kafka``: client factories and the
  translation of broker errors; ``errors`` and ``retry``: the shared vocabulary and loop.

Observability: ``telemetry`` (logs), ``tracing``, ``metrics``, ``health``, ``collector``.
Operator tools: ``cli``, ``bench``, ``evaluate``, ``demo``, ``broker`` (embedded),
``prompt_view``; the review loop: ``decisions``, ``coop``.
Test support: ``devmodel`` builds the trigger-word test model.
"""

from .subprocesses import bind_if_spawned_child

# The engine's processes are fresh interpreters (multiprocessing's spawn method) that import
# this package first, while preparing to run: the earliest moment they can bind themselves
# to the worker, so that they end when it does, however it dies.
bind_if_spawned_child()
