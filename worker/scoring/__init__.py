"""The scoring core, below the pipeline: what the worker, ``classify``, ``eval`` and ``bench``
share, so each measures exactly what the worker does.

``classify``: jobs (an event with its policies), scoring a batch of them on the engine, and
building a verdict from the scores; ``verdict_cache``: scores of content seen before;
``shadow``: draft policies scored beside production ones and what they would change.
It knows the engine only by its ``Classifier`` protocol and knows nothing of Kafka.
"""
