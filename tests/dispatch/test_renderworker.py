"""The render workers: real processes, a real deadline, a real memory limit.

The templates here pass the sandbox's own checks (each single operation is
small) and are stopped only by the worker's budget, which is the point.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from kryten_rules.dispatch import renderpool, renderworker
from kryten_rules.dispatch.renderpool import Budget, RenderPool
from kryten_rules.dispatch.renderworker import BUDGET_CODE
from kryten_rules.ruleformat.templates import TemplateProblem

# 90,000 loop items, each sorting an 18,000-item list: about a minute of CPU
CPU_HOG = (
    "{% for a in s %}{% for b in s %}{% if (s * 60)|list|sort|length < 0 %}x{% endif %}"
    "{% endfor %}{% endfor %}"
)
# 20,000 lists of 20,000 items: ~3 GB
MEMORY_HOG = "{{ ([s * 66] * 20000)|map('list')|list|length }}"
CONTEXT: dict[str, Any] = {"s": "y" * 300, "user": {"name": "alice"}}
FAST = Budget(seconds=1.0)


@pytest.fixture
async def pool() -> Any:
    p = RenderPool(budget=FAST)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


def _pids(p: RenderPool) -> set[int]:
    return set(p.worker_pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): ask /proc whether it has exited (it may be
    # reaped, and its /proc entry gone, between the two looks)
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # ENOENT on open, ESRCH on read
        return False


async def test_renders_each_template_in_order(pool: RenderPool) -> None:
    out = await pool.render(["hi {{ user.name }}", "{{ 6 * 7 }}", "{{ nobody }}"], CONTEXT)
    assert out[:2] == ["hi alice", "42"]
    assert isinstance(out[2], TemplateProblem) and out[2].code == "template-render"
    assert "'nobody' is undefined" in out[2].message


async def test_the_event_loop_runs_while_a_worker_renders(pool: RenderPool) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    try:
        out = await pool.render([CPU_HOG], CONTEXT)
    finally:
        ticker.cancel()
    assert isinstance(out[0], TemplateProblem)
    assert ticks > 10, "the loop was blocked during the render"


async def test_a_render_past_its_deadline_is_stopped_and_the_worker_replaced(
    pool: RenderPool,
) -> None:
    before = _pids(pool)
    out = await pool.render(["fallback text", CPU_HOG, "never reached"], CONTEXT)
    assert out[0] == "fallback text"  # what rendered before the hog is kept
    for problem in out[1:]:
        assert isinstance(problem, TemplateProblem) and problem.code == BUDGET_CODE
        assert "time budget (1 s)" in problem.message
    assert pool.replaced == 1
    killed = before - _pids(pool)
    assert len(killed) == 1
    (pid,) = killed
    await _until(lambda: not _alive(pid), "the killed worker to be gone")
    # and rendering goes on, on both workers
    assert await asyncio.gather(*(pool.render(["ok"], CONTEXT) for _ in range(4))) == [["ok"]] * 4


async def test_a_render_past_its_memory_budget_fails_and_the_worker_starts_clean() -> None:
    pool = RenderPool(budget=Budget(seconds=60.0))  # the memory limit must stop it, not time
    await pool.start()
    try:
        await _memory_hog_stopped(pool)
    finally:
        await pool.close()


async def _memory_hog_stopped(pool: RenderPool) -> None:
    out = await pool.render(["before", MEMORY_HOG], CONTEXT)
    assert out[0] == "before"
    assert isinstance(out[1], TemplateProblem) and out[1].code == BUDGET_CODE
    assert "memory budget (256 MiB)" in out[1].message
    assert pool.replaced == 1  # recycled: a heap that hit its limit is not kept
    assert await pool.render(["{{ user.name }}"], CONTEXT) == ["alice"]


async def test_a_cancelled_render_kills_its_worker(pool: RenderPool) -> None:
    task = asyncio.create_task(pool.render([CPU_HOG], CONTEXT))
    await _until(lambda: pool.busy == 1, "the render to start")
    before = _pids(pool)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.replaced == 1
    assert len(before - _pids(pool)) == 1
    assert await pool.render(["ok"], CONTEXT) == ["ok"]


async def test_close_stops_every_worker_even_a_busy_one() -> None:
    p = RenderPool(budget=Budget(seconds=60.0))
    await p.start()
    pids = _pids(p)
    assert len(pids) == 2
    task = asyncio.create_task(p.render([CPU_HOG], CONTEXT))
    await _until(lambda: p.busy == 1, "the render to start")
    task.cancel()  # what Bot.stop does to a reply still in progress after its grace
    await asyncio.gather(task, return_exceptions=True)
    await p.close()
    for pid in pids:
        await _until(lambda pid=pid: not _alive(pid), f"worker {pid} to exit")
    out = await p.render(["ok"], CONTEXT)
    assert isinstance(out[0], TemplateProblem) and "stopping" in out[0].message


def test_compiled_templates_are_cached_in_the_worker() -> None:
    # the worker's own function, called here: a second render of a source compiles nothing
    renderworker.compiled.cache_clear()
    source = "{% for i in s %}{{ loop.index }}{% endfor %}"
    first = renderworker.render_one(source, CONTEXT, FAST.memory)
    assert renderworker.render_one(source, CONTEXT, FAST.memory) == first
    info = renderworker.compiled.cache_info()
    assert (info.misses, info.hits) == (1, 1)


async def _until(pred: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_workers_do_not_inherit_the_services_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-in-a-worker")
    p = RenderPool(size=1)
    await p.start()
    try:
        (pid,) = _pids(p)
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
        assert b"sk-never-in-a-worker" not in environ
        assert await p.render(["{{ user.name }}"], CONTEXT) == ["alice"]
    finally:
        await p.close()


async def test_a_lone_surrogate_travels_as_text_and_the_worker_lives(pool: RenderPool) -> None:
    # validate accepts both; the worker used to die encoding its answer as UTF-8
    before = _pids(pool)
    out = await pool.render(["hi {{ '%c' % 55296 }}", "{{ '\\ud800' }}!"], CONTEXT)
    assert out == ["hi \ud800", "\ud800!"]
    assert _pids(pool) == before and pool.replaced == 0


async def test_a_template_that_keeps_running_out_is_quarantined(pool: RenderPool) -> None:
    for _ in range(renderpool.QUARANTINE_STRIKES):
        (out,) = await pool.render([CPU_HOG], CONTEXT)
        assert isinstance(out, TemplateProblem) and "time budget" in out.message
    replaced = pool.replaced
    assert pool.quarantined(CPU_HOG) and not pool.quarantined("ok {{ user.name }}")
    # now it fails at once, without a worker, and the templates around it still render
    out = await pool.render(["fallback", CPU_HOG, "ok {{ user.name }}"], CONTEXT)
    assert out[0] == "fallback" and out[2] == "ok alice"
    assert isinstance(out[1], TemplateProblem) and out[1].code == BUDGET_CODE
    assert "not rendered" in out[1].message
    assert pool.replaced == replaced  # no worker was killed for it


async def test_only_the_template_that_ran_out_is_struck(pool: RenderPool) -> None:
    for _ in range(renderpool.QUARANTINE_STRIKES):
        await pool.render([CPU_HOG, "never reached {{ user.name }}"], CONTEXT)
    assert pool.quarantined(CPU_HOG)
    assert not pool.quarantined("never reached {{ user.name }}")


async def test_a_quarantine_ends_with_its_window(
    pool: RenderPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(renderpool.QUARANTINE_STRIKES):
        await pool.render([CPU_HOG], CONTEXT)
    assert pool.quarantined(CPU_HOG)
    later = time.monotonic() + renderpool.QUARANTINE_WINDOW + 1
    monkeypatch.setattr(renderpool.time, "monotonic", lambda: later)
    assert not pool.quarantined(CPU_HOG)
