"""moderation-worker: classifies a stream of content events against written policies.

``pipeline/``: the serving path, in the order data flows through it:

- ``intake``: fetch within the in-flight bound, decode, hand on items (``undecodable`` at
  the top level: records the Kafka client cannot read).
- ``batching``: micro-batches. ``classify``: a batch scored against its policies,
  thresholds and routes.
- ``outcomes``: what each item produces, a verdict with its review or audit copy or a dead
  letter (pure); ``publish``: sending it and deciding what a send error means.
- ``commits``, ``offsets`` and ``progress``: committing the contiguous prefix of finished
  offsets.
- ``worker``: the ``Worker`` wiring these parts (``from worker.pipeline import Worker``).

Shared by the pipeline and the tools, at the top level: ``events`` (the wire models),
``config``, ``catalog``, ``policies``, ``prompts``, ``prompt_check``, ``routing``,
``audit``, ``shadow``, ``verdict_cache``, ``engine/`` (the ``Classifier`` protocol, its
engines, and ``tokenizer``: loading the model's tokenizer); ``app``: start-up order and
shutdown, with ``preflight`` checks before the model loads; ``kafka``: client factories
and the translation of broker errors; ``errors`` and ``retry``: the shared vocabulary (the
error tree, the dead-letter kinds) and the jittered retry loop; ``supervise``: the task
group every long-lived loop runs in; ``subprocesses``: child processes bound to the
worker; ``cli``: the commands.

The review loop: ``decisions`` (the reviewers' decision records) and ``coop/`` (the
review-tool adapter, a long-running service of its own).

``observability/``: ``telemetry`` (logs), ``tracing``, ``metrics`` (with ``gauges``, the
state read at scrape time), ``health``, ``collector`` (garbage-collector tuning).

``tools/``: the operator tools: ``bench/`` (``summary``: its ratios and targets),
``evaluate/``, ``demo``, ``broker`` (an embedded broker), ``prompt_view``,
``classify_lines`` (the classify command's work).

``testing/``: ``devmodel`` builds the trigger-word test model the tests and the demo use
(``words``: its vocabulary; ``circuit``: its hand-set weights).
"""

from .subprocesses import bind_if_spawned_child

# The engine's processes are fresh interpreters (multiprocessing's spawn method) that import
# this package first, while preparing to run: the earliest moment they can bind themselves
# to the worker, so that they end when it does, however it dies.
bind_if_spawned_child()
