"""moderation-worker: classifies a stream of content events against written policies.

The modules stand on floors; each imports only its own floor and those below it, never up
and never in a circle (tests/unit/test_layers.py holds this true). Lowest first:

1. Foundation: ``errors`` and ``retry`` (the shared vocabulary: the error tree and the
   dead-letter kinds; the jittered retry loop), ``supervise`` (the task group every
   long-lived loop runs in), ``config/`` (every setting, a module per section; ``env``: the
   environment read strictly; ``coop``: the Coop adapter's section), ``subprocesses`` (child
   processes bound to the worker), ``testing/`` (``devmodel`` builds the trigger-word test
   model the tests use; ``words``: its vocabulary; ``circuit``: its weights; ``seeing``: the
   same model with a vision path, for image tests and the demo; ``media_samples``: images
   and videos made on the spot).
2. Domain: ``events`` (the wire models), ``policies`` (with ``packs``: which files of a
   pack are policies; ``policy_lint``: what ``policies check`` warns about), ``prompts``,
   ``prompt_check``, ``prefixes`` (a pack's prompts compiled in batches),
   ``compile_process`` (a reload's many changes compiled in a child), ``routing``,
   ``catalog``, ``audit``, ``decisions`` (the reviewers' decision records), ``kafka``
   (client factories and the translation of broker errors),
   ``model_files`` (a model's files from a directory, the cache or the hub, failing fast
   offline), ``hashbanks/`` (banks of known content: signal types, the bank directory, the
   PDQ index, decisions, reloads), ``kv_footprint`` (a policy prefix's KV-cache size for a
   model config), ``media/`` (images and video on events: ``refs``, ``guard``, ``fetch``,
   ``decode``, and ``step`` joining them).
3. ``engine/``: the ``Classifier`` protocol; ``tokenizer`` loads the model's tokenizer;
   ``factory`` opens an engine (vLLM in this process, remote vLLM servers, or the instant
   engine). Nothing outside the package imports its other modules.
4. ``scoring/``: the core the worker, ``classify``, ``eval`` and ``bench`` share:
   ``classify`` (jobs, the hash banks' first pass, scoring a batch, building verdicts),
   ``verdict_cache``, ``shadow``.
5. ``observability/``: ``telemetry`` (logs), ``tracing``, ``metrics`` (with ``gauges``, the
   state read at scrape time), ``health``, ``collector`` (garbage-collector tuning).
6. ``pipeline/``: the serving path, each part importing only those before it:
   ``offsets`` (the ledger of finished offsets), ``undecodable`` (records the Kafka client
   cannot read), ``intake`` (fetch within the in-flight bound, decode, hand on jobs),
   ``batching`` (micro-batches; ``worker.scoring`` scores them), ``outcomes`` (what each
   item produces: a verdict with its review or audit copy, or a dead letter; pure),
   ``publish`` (sending it, deciding what a send error means), ``commits`` and ``progress``
   (committing the contiguous prefix of finished offsets), ``worker`` (the ``Worker``
   wiring these parts: ``from worker.pipeline import Worker``).
7. Applications: ``app`` (start-up order and shutdown, with ``preflight`` checks before the
   model loads), ``cli`` (the commands; ``cli_common``: what they share),
   ``coop/`` (the review-tool adapter, a long-running service of its own), ``tools/``:
   ``bench/`` (``summary``: its ratios and targets), ``evaluate/`` (``cli``: the ``eval``
   subcommands), ``demo``, ``broker`` (an embedded broker), ``prompt_view``, ``pack_check``
   (the policies check report), ``classify_lines`` (the classify command's work),
   ``chart_schema`` (the Helm chart's values schema, generated from ``config``).
"""

from .subprocesses import bind_if_spawned_child

# The engine's processes are fresh interpreters (multiprocessing's spawn method) that import
# this package first, while preparing to run: the earliest moment they can bind themselves
# to the worker, so that they end when it does, however it dies.
bind_if_spawned_child()
