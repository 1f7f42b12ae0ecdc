"""A reload's prompt halves: few changed policies in the calling thread, many in a child.

A reload compiles beside serving. A few changed policies compile in the reload thread in
milliseconds. A pack rewritten whole is about 2 CPU ms a policy of tokenizing and Python
work: twenty CPU seconds for 10,000 policies, which in a thread of the worker's process take
the GIL in turns with the event loop that feeds the engine (measured without an engine, it
held the loop up to 0.58 s at a time, against 0.09 s with the compile apart). So from
``APART_AT`` new policy texts on, the compile runs in a process of its own: a fresh
interpreter (``python -m worker.compile_process``) at niceness +``NICENESS``, which holds no
lock the worker needs.

The parent sends the tokenizer's path and each new policy's id, version and text. The child
loads the tokenizer from that path (the fast tokenizer class alone: ``AutoTokenizer`` would
import the model libraries, seconds of CPU), answers with its fingerprint
(``prefixes.fingerprint``: backend, chat template, special tokens), then compiles and proves
each policy as ``compile_halves`` does and sends the halves back a batch at a time, token ids
as 32-bit arrays, so that taking one batch in holds the parent's GIL for about a millisecond.

- A tokenizer the child cannot load, or one that differs from the caller's: the policies
  compile in the calling thread, as for a small reload, with one warning in the log.
- A policy that cannot compile: the child's PromptError is raised in the parent, as if the
  compile had run there.
- A child that dies or cannot start: CompileProcessError; the reload is rejected like any
  other and the catalog in use stays.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import tempfile
from array import array
from collections.abc import Iterable, Mapping
from typing import IO, Any

import structlog

from .errors import FatalError
from .policies import Policy
from .prefixes import CHUNK, Halves, compile_halves, fingerprint, shared_ids
from .prompts import PromptError, Tokenizer
from .subprocesses import bound_to_parent

log = structlog.get_logger("worker.compile_process")

# New policy texts from which a reload compiles in a child. In the reload thread 256 take
# about half a second; starting the child costs about a second of CPU (at low priority).
APART_AT = 256
NICENESS = 10  # the child gives way to serving, but is not starved on a busy machine
_LENGTH = struct.Struct(">Q")
_STDERR_TAIL = 300  # characters of the child's stderr in the error


class CompileProcessError(FatalError):
    """The compile process died, or could not start; the reload that needed it fails."""


def compile_changed(
    tokenizer: Tokenizer, policies: Iterable[Policy], known: Mapping[str, Halves]
) -> dict[str, Halves]:
    """Halves by version for ``policies``, as ``compile_halves(..., known, alone=True)``
    gives them: a reload's compile. Raises PromptError, or CompileProcessError."""
    policies = list(policies)
    todo = list({p.version: p for p in policies if p.version not in known}.values())
    source = getattr(tokenizer, "name_or_path", None)
    if len(todo) >= APART_AT and source and fingerprint(tokenizer) is not None:
        fresh = compile_apart(tokenizer, str(source), todo)
        if fresh is not None:
            return compile_halves(tokenizer, policies, {**known, **fresh})
        log.warning(
            "policy compile process: its tokenizer is not the engine's; compiling in the "
            "reload thread",
            tokenizer=str(source),
        )
    return compile_halves(tokenizer, policies, known, alone=True)


def compile_apart(
    tokenizer: Tokenizer, source: str, policies: list[Policy]
) -> dict[str, Halves] | None:
    """``policies`` compiled by a child that loads its tokenizer from ``source``; None when
    that tokenizer is not ``tokenizer``."""
    command = bound_to_parent([sys.executable, "-m", __name__])
    with tempfile.TemporaryFile() as stderr:
        try:
            pipe = subprocess.PIPE
            child = subprocess.Popen(command, stdin=pipe, stdout=pipe, stderr=stderr)  # noqa: S603
        except OSError as exc:
            raise CompileProcessError(f"policy compile process cannot start: {exc}") from None
        try:
            return _exchange(child, tokenizer, source, policies)
        except (OSError, EOFError, pickle.UnpicklingError, ValueError):
            child.kill()
            raise CompileProcessError(_death(child, stderr)) from None
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
            for pipe in (child.stdin, child.stdout):
                if pipe is not None and not pipe.closed:
                    pipe.close()


def _exchange(
    child: subprocess.Popen[bytes], tokenizer: Tokenizer, source: str, policies: list[Policy]
) -> dict[str, Halves] | None:
    stdin, stdout = child.stdin, child.stdout
    assert stdin is not None and stdout is not None  # noqa: S101 (Popen with PIPE)
    send(stdin, (source, [(p.id, p.version, p.text) for p in policies]))
    stdin.close()
    if receive(stdout) != ("fingerprint", fingerprint(tokenizer)):
        return None
    halves: dict[str, Halves] = {}
    tails: dict[bytes, tuple[int, ...]] = {}
    while True:
        message = receive(stdout)
        if message[0] == "done":
            return halves
        if message[0] == "error":
            raise PromptError(message[1], message[2])
        _, suffixes, items = message
        for version, prefix, tail in items:
            suffix = suffixes[tail]
            if suffix not in tails:
                tails[suffix] = shared_ids(array("I", suffix))
            halves[version] = Halves(shared_ids(array("I", prefix)), tails[suffix])


def _death(child: subprocess.Popen[bytes], stderr: IO[bytes]) -> str:
    code = child.wait()
    stderr.seek(0)
    words = " ".join(stderr.read().decode("utf-8", "replace").split())
    said = f": {words[-_STDERR_TAIL:]}" if words else ""
    return f"policy compile process (python -m {__name__}) ended with exit code {code}{said}"


def send(stream: IO[bytes], message: Any) -> None:
    """One message: its length, then its pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def receive(stream: IO[bytes]) -> Any:
    """The next message; EOFError when the stream ends first."""
    head = _exactly(stream, _LENGTH.size)
    return pickle.loads(_exactly(stream, _LENGTH.unpack(head)[0]))  # noqa: S301 (our child)


def _exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the stream ended mid-message")
    return data


def packed(halves: Mapping[str, Halves]) -> tuple[list[bytes], list[tuple[str, bytes, int]]]:
    """Halves as sent: the distinct suffixes, and each version's prefix and suffix index."""
    tails: dict[tuple[int, ...], int] = {}
    items = []
    for version, half in halves.items():
        index = tails.setdefault(half.suffix, len(tails))
        items.append((version, array("I", half.prefix).tobytes(), index))
    return [array("I", suffix).tobytes() for suffix in tails], items


def _load_tokenizer(source: str) -> Tokenizer | None:
    from transformers import PreTrainedTokenizerFast

    try:
        return PreTrainedTokenizerFast.from_pretrained(source)
    except Exception as exc:  # any failure: the parent compiles in its own thread
        sys.stderr.write(f"cannot load the tokenizer from {source!r}: {exc}\n")
        return None


def main() -> int:
    """The child: one request on stdin, the halves on stdout."""
    os.nice(NICENESS)
    source, items = receive(sys.stdin.buffer)
    out = sys.stdout.buffer
    tokenizer = _load_tokenizer(source)
    send(out, ("fingerprint", fingerprint(tokenizer) if tokenizer is not None else None))
    if tokenizer is None:
        return 0
    policies = [Policy(pid, pid, text, version) for pid, version, text in items]
    try:
        for start in range(0, len(policies), CHUNK):
            batch = compile_halves(tokenizer, policies[start : start + CHUNK], alone=True)
            send(out, ("halves", *packed(batch)))
    except PromptError as exc:
        send(out, ("error", exc.kind, exc.reason))
        return 0
    send(out, ("done",))
    return 0


if __name__ == "__main__":
    sys.exit(main())
