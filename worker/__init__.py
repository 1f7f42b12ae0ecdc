"""moderation-worker: classifies a stream of content events against written policies."""

from .subprocesses import bind_if_spawned_child

# The engine's processes are fresh interpreters (multiprocessing's spawn method) that import
# this package first, while preparing to run: the earliest moment they can bind themselves
# to the worker, so that they end when it does, however it dies.
bind_if_spawned_child()
