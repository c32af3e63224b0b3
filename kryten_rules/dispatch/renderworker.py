"""The render worker process: ``python -m kryten_rules.dispatch.renderworker MEMORY SECONDS``.

Started by :class:`~kryten_rules.dispatch.renderpool.RenderPool`; see that
module for why renders run in processes. A worker limits its own address
space, dies with its parent, and renders each job's templates in order,
answering one JSON frame per template.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import resource
import signal
import struct
import sys
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kryten_rules.ruleformat.templates import CompiledTemplate

BUDGET_CODE = "template-budget"
HEADER = struct.Struct(">I")
"""Frame header, both ways: a 4-byte big-endian length, then the payload."""



def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when the service goes, however it goes (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _address_space() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _read_frame(inp: IO[bytes]) -> bytes | None:
    head = inp.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (size,) = HEADER.unpack(head)
    data = inp.read(size)
    return data if len(data) == size else None


def _write_frame(out: IO[bytes], value: dict[str, Any]) -> None:
    # ASCII JSON: a template can make any str, a lone surrogate too ('%c' % 55296),
    # and that must travel as text rather than fail to encode and kill the worker
    data = json.dumps(value).encode("ascii")
    out.write(HEADER.pack(len(data)) + data)
    out.flush()


@lru_cache(maxsize=1024)
def compiled(source: str) -> CompiledTemplate:
    from kryten_rules.ruleformat.templates import compile_template

    return compile_template(source)


def render_one(source: str, context: Mapping[str, Any], memory: int) -> dict[str, Any]:
    from kryten_rules.ruleformat.templates import TemplateProblem

    out_of_memory = {
        "code": BUDGET_CODE,
        "message": f"rendering ran out of its memory budget ({memory // (1024 * 1024)} MiB)",
        "recycle": True,  # a heap that hit its limit is not worth keeping
    }
    try:
        return {"text": compiled(source).render(context)}
    except TemplateProblem as exc:
        if exc.code == BUDGET_CODE:
            return out_of_memory
        return {"code": exc.code, "message": exc.message}
    except MemoryError:  # outside the template's own try: compiling it
        return out_of_memory


def main(argv: Sequence[str]) -> int:
    """The worker process: ``python -m kryten_rules.dispatch.renderworker MEMORY SECONDS``."""
    memory, seconds = int(argv[0]), float(argv[1])
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the service, which stops us
    out = os.fdopen(os.dup(1), "wb")  # the protocol's own descriptor...
    os.dup2(2, 1)  # ...so a stray print cannot corrupt it
    inp = sys.stdin.buffer
    from kryten_rules.ruleformat.templates import environment

    environment()  # build the sandbox before the limit, and before the first job
    limit = _address_space() + memory
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        _write_frame(out, {"ready": os.getpid()})
        while (frame := _read_frame(inp)) is not None:
            sources, context = pickle.loads(frame)
            # if the service could not kill us in time, the kernel does (SIGALRM's default)
            signal.setitimer(signal.ITIMER_REAL, seconds * 2 + 1)
            for source in sources:
                _write_frame(out, render_one(source, context, memory))
            signal.setitimer(signal.ITIMER_REAL, 0)
    except BrokenPipeError:  # the service is gone: nobody to answer, nothing to flush
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
