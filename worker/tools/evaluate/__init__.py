"""Measuring policies on a labelled sample: metrics, suggested thresholds, steerability.

``moderation-worker eval dataset`` scores a golden set with the same engine, prompts and
thresholds the worker uses, so the figures describe what the worker will do in production.
``cli`` holds the ``eval`` subcommands (and the flag forms from before them).

* ``dataset``: reading golden rows and contrastive pairs; bad rows named by line.
* ``selection``: which policies run (the policy directory, plus draft files).
* ``runner``: driving the engine through ``scoring.classify.score_jobs``.
* ``metrics``, ``thresholds``: the arithmetic, pure functions.
* ``evaluation``: scores in, every figure out.
* ``document``, ``charts``, ``console``, ``report``: showing the result.
* ``command``: the ``eval dataset`` command's body.

``eval decisions`` measures automatic decisions against reviewers' instead, no engine:

* ``records``: reading decisions and review records from a file or a topic.
* ``estimators``: weighted shares and their intervals, pure functions.
* ``feedback``: the join and every figure, pure; ``feedback_document``: showing it.
* ``feedback_command``: the command's body.

``eval shadow`` (``shadow``) counts what a shadow policy would change, from its records.
"""
