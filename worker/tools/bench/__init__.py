"""``moderation-worker bench``: how close the worker gets to its engine's limit.

Phases, each measured on the same workload (policies fitted to a token length, contents of
a token-length range) and run one after another:

1. engine limit: the prompts through vLLM's offline ``LLM.generate`` in one batch;
2. the worker: events streamed through a broker, saturated rate and open-loop latency;
3. the worker on the remote engine: its prompts over HTTP to vLLM's OpenAI server;
4. the naive peer: a consumer sending one HTTP request per event to the same kind of server;
5. overhead: the worker on an instant engine against a raw consume-produce-commit loop.
"""

from .config import BenchConfig
from .runner import run_bench

__all__ = ["BenchConfig", "run_bench"]
