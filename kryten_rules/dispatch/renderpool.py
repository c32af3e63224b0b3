"""Every render under a hard time and memory budget, enforced from outside it.

The sandbox (``templates.py``) refuses what it can size, but a template is a
program: a recursive macro doubling a string, or some C-level operation nobody
listed, can still run for minutes or take gigabytes. Python cannot interrupt C
code running in a thread, and a thread holding the GIL would stall the event
loop anyway. So the service renders in worker processes:

* each worker limits its own address space (``RLIMIT_AS``) right after start,
  so an allocation past its budget fails with ``MemoryError`` instead of
  taking the machine's memory;
* the service gives each job a wall-clock deadline; a worker that misses it
  is killed (SIGKILL: nothing in the child can ignore it) and replaced;
* a worker cannot outlive the service: it dies with its parent
  (``PR_SET_PDEATHSIG``), exits on end of input, and arms ``SIGALRM`` (default
  action: terminate) for each job in case nobody is left to kill it.

The service awaits a job without blocking the event loop, so commands,
events and SIGTERM are served while a render runs. Inputs are picklable by
construction: the templates' source text (each worker caches what it
compiled, keyed by source) and the plain context dict the engine builds.
Results come back as JSON (text, or a problem's code and message) so the
service never unpickles what a template produced.

Wire format, both ways: a 4-byte big-endian length, then the payload.
Service -> worker: pickle of ``(sources, context)``. Worker -> service: one
JSON object per source, in order, as each is rendered (so a prompt that hangs
does not take the already rendered ``fallback_reply`` with it); the first
frame a worker sends is ``{"ready": pid}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kryten_rules.ruleformat.templates import TemplateProblem

from kryten_rules.dispatch.renderworker import BUDGET_CODE, HEADER
from kryten_rules.errors import KrytenRulesError

log = logging.getLogger(__name__)

WORKERS = 2  # two renders at once: one hostile template does not stall the others
DEADLINE = 2.0  # seconds for one decision's templates; a normal one takes well under 1 ms
MEMORY = 256 * 1024 * 1024  # bytes a worker may add to its address space at start
START_TIMEOUT = 30.0  # a busy machine can take seconds to start Python
MAX_FRAME = 1 << 20  # a result is at most 20,000 chars; anything bigger is a broken worker
QUARANTINE_STRIKES = 2  # budget failures of one template within the window...
QUARANTINE_WINDOW = 600.0  # ...seconds, and its renders fail at once for the window


@dataclass(frozen=True, slots=True)
class Budget:
    """What one decision's render may cost."""

    seconds: float = DEADLINE
    memory: int = MEMORY


class RenderWorkerError(KrytenRulesError, RuntimeError):
    """A render worker could not be started or talked to."""


def _failed(n: int, message: str) -> list[str | TemplateProblem]:
    from kryten_rules.ruleformat.templates import TemplateProblem

    return [TemplateProblem("template-budget", message)] * n


def _decoded(result: Mapping[str, Any]) -> str | TemplateProblem:
    """One worker answer as an outcome. The codes are the ones a render can
    produce (``CompiledTemplate.render``); anything else is a broken worker."""
    from kryten_rules.ruleformat.templates import TemplateProblem

    if "text" in result:
        return str(result["text"])
    code, message = result.get("code"), str(result.get("message", ""))
    if code == "template-render":
        return TemplateProblem("template-render", message)
    if code == "template-unsafe":
        return TemplateProblem("template-unsafe", message)
    if code == "template-budget":
        return TemplateProblem("template-budget", message)
    raise RenderWorkerError(f"the render worker answered with code {code!r}")


# --- the service's side ------------------------------------------------------------------

# what a worker needs of the service's environment to start Python and find us;
# API keys and the NATS URL stay behind, in case a template ever got out of its sandbox
_ENV_KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "VIRTUAL_ENV")


def _worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in _ENV_KEPT or k.startswith("PYTHON")}



class _Worker:
    """One worker process and its pipes; used by one job at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.healthy = True

    @classmethod
    async def spawn(cls, budget: Budget) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kryten_rules.dispatch.renderworker",
            str(budget.memory),
            str(budget.seconds),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=_worker_env(),
        )
        worker = cls(proc)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                ready = await worker._read()
        except (TimeoutError, RenderWorkerError) as exc:
            worker.kill()
            await worker.reap()
            why = exc or "timed out"
            raise RenderWorkerError(f"the render worker did not start: {why}") from exc
        if "ready" not in ready:
            worker.kill()
            await worker.reap()
            raise RenderWorkerError(f"the render worker said {ready!r} instead of ready")
        return worker

    @property
    def alive(self) -> bool:
        return self.healthy and self.proc.returncode is None

    async def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            (size,) = HEADER.unpack(await self.proc.stdout.readexactly(HEADER.size))
            if size > MAX_FRAME:
                raise RenderWorkerError(f"the render worker sent a {size}-byte frame")
            data = await self.proc.stdout.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            raise RenderWorkerError("the render worker died") from exc
        value = json.loads(data)
        if not isinstance(value, dict):
            raise RenderWorkerError("the render worker sent something other than an object")
        return value

    async def run(
        self, sources: Sequence[str], context: Mapping[str, Any], budget: Budget
    ) -> list[str | TemplateProblem]:
        """Render ``sources`` with ``context``; a template not reached in time is a
        ``template-budget`` problem, and the worker is then killed."""
        assert self.proc.stdin is not None
        payload = pickle.dumps((list(sources), dict(context)), protocol=pickle.HIGHEST_PROTOCOL)
        out: list[str | TemplateProblem] = []
        try:
            async with asyncio.timeout(budget.seconds):
                self.proc.stdin.write(HEADER.pack(len(payload)) + payload)
                await self.proc.stdin.drain()
                while len(out) < len(sources):
                    result = await self._read()
                    if result.get("recycle"):  # it hit its memory limit: start clean
                        self.healthy = False
                    out.append(_decoded(result))
        except TimeoutError:
            self.kill()
            message = (
                f"rendering ran out of its time budget ({budget.seconds:g} s) and was stopped"
            )
        except (RenderWorkerError, OSError, ValueError) as exc:  # died, or spoke nonsense
            self.kill()
            mib = budget.memory // (1024 * 1024)
            message = f"the render worker failed ({exc}); its memory budget is {mib} MiB"
        else:
            return out
        return out + _failed(len(sources) - len(out), message)

    def kill(self) -> None:
        self.healthy = False
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def reap(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            await self.proc.wait()

    async def close(self, timeout: float = 1.0) -> None:
        """End of input asks the worker to exit; one that does not is killed."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            async with asyncio.timeout(timeout):
                await self.proc.wait()
        except TimeoutError:
            self.kill()
            await self.reap()


class RenderPool:
    """A few render workers; :meth:`render` waits for an idle one.

    A worker that was killed (deadline) or asked to be recycled (memory) is
    replaced in the background, so the next render finds a started one.
    """

    def __init__(self, size: int = WORKERS, budget: Budget | None = None) -> None:
        self.size = size
        self.budget = budget or Budget()
        self.busy = 0  # renders in progress
        self.replaced = 0  # workers killed and started anew
        self._idle: asyncio.Queue[_Worker | None] = asyncio.Queue()
        self._workers: set[_Worker] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._strikes: dict[str, list[float]] = {}  # template source -> budget failures

    def quarantined(self, source: str) -> bool:
        """Whether ``source`` ran out of its budget :data:`QUARANTINE_STRIKES` times
        in the last :data:`QUARANTINE_WINDOW` seconds: it is then not rendered at all,
        so a flood of hostile triggers cannot keep the workers busy for everyone else."""
        strikes = self._strikes.get(source)
        if not strikes:
            return False
        now = time.monotonic()
        strikes[:] = [t for t in strikes if now - t < QUARANTINE_WINDOW]
        if not strikes:
            del self._strikes[source]
        return len(strikes) >= QUARANTINE_STRIKES

    def _strike(self, sources: Sequence[str], outcomes: Sequence[str | TemplateProblem]) -> None:
        """Count a budget failure against the template that caused it: the first one
        that ran out (the ones after it were never reached)."""
        for source, outcome in zip(sources, outcomes, strict=True):
            if not isinstance(outcome, str) and outcome.code == BUDGET_CODE:
                strikes = self._strikes.setdefault(source, [])
                strikes.append(time.monotonic())
                if len(strikes) == QUARANTINE_STRIKES:
                    log.error(
                        "a template ran out of its render budget %d times: it is not "
                        "rendered for %d minutes (%.60r)",
                        QUARANTINE_STRIKES,
                        QUARANTINE_WINDOW // 60,
                        source,
                    )
                return


    @property
    def worker_pids(self) -> frozenset[int]:
        """The process ids of the running workers (for health checks and operators)."""
        return frozenset(w.proc.pid for w in self._workers)

    async def start(self) -> None:
        """Start every worker; raises :class:`RenderWorkerError` if one cannot start."""
        results = await asyncio.gather(
            *(_Worker.spawn(self.budget) for _ in range(self.size)), return_exceptions=True
        )
        for r in results:
            if isinstance(r, _Worker):
                self._workers.add(r)
                self._idle.put_nowait(r)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.close()
            raise RenderWorkerError(str(errors[0])) from errors[0]

    async def render(
        self, sources: Sequence[str], context: Mapping[str, Any]
    ) -> list[str | TemplateProblem]:
        """One outcome per source, in order: the text, or the problem. Never raises
        for a template's sake; a render that runs out of budget is a problem."""
        stopping = _failed(len(sources), "the service is stopping")
        if self._closed:
            return stopping
        held = [i for i, source in enumerate(sources) if self.quarantined(source)]
        if held:
            return await self._render_around(sources, context, held)
        worker = await self._idle.get()
        if self._closed:
            self._idle.put_nowait(worker)
            return stopping
        self.busy += 1
        try:
            if worker is None or not worker.alive:
                worker = await self._start_one()
                if worker is None:
                    return _failed(len(sources), "no render worker could be started (see the log)")
            outcomes = await worker.run(sources, context, self.budget)
            self._strike(sources, outcomes)
            return outcomes
        except asyncio.CancelledError:
            if worker is not None:
                worker.kill()  # it is mid-job: its next answer would be this job's
            raise
        finally:
            self.busy -= 1
            self._give_back(worker)

    async def _render_around(
        self, sources: Sequence[str], context: Mapping[str, Any], held: list[int]
    ) -> list[str | TemplateProblem]:
        """Render the sources that are not quarantined; the others fail at once."""
        (problem,) = _failed(
            1,
            f"not rendered: this template ran out of its budget {QUARANTINE_STRIKES} times "
            f"in {QUARANTINE_WINDOW // 60:.0f} minutes",
        )
        rest = [s for i, s in enumerate(sources) if i not in held]
        done = iter(await self.render(rest, context) if rest else [])
        return [problem if i in held else next(done) for i in range(len(sources))]

    async def _start_one(self) -> _Worker | None:
        try:
            worker = await _Worker.spawn(self.budget)
        except (RenderWorkerError, OSError) as exc:
            log.error("render worker: %s", exc)
            return None
        if self._closed:
            await worker.close()
            return None
        self._workers.add(worker)
        return worker

    def _give_back(self, worker: _Worker | None) -> None:
        if worker is not None and worker.alive:
            self._idle.put_nowait(worker)
            return
        if worker is not None:
            self._workers.discard(worker)
            self._spawn_task(worker.reap())
        if self._closed:
            self._idle.put_nowait(None)
            return
        self.replaced += 1
        self._spawn_task(self._replace())

    async def _replace(self) -> None:
        self._idle.put_nowait(await self._start_one())

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop every worker: idle ones exit on end of input, busy ones are killed."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(w.close() for w in list(self._workers)), return_exceptions=True)
        self._workers.clear()
        while not self._idle.empty():
            self._idle.get_nowait()
        # renders still waiting for a worker get the "stopping" answer
        for _ in range(self.size):
            self._idle.put_nowait(None)
