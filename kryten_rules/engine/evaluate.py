"""Evaluate one event against the compiled rules -> a :class:`Decision`.

One module because :meth:`Engine.evaluate` and the gates it calls share the
engine's tables on the hot path (a few microseconds an event); the pure gate
predicates are in ``gates.py``, the decision in ``decision.py`` and the
template context in ``context.py``.

Semantics are docs/rules.md "Evaluation": rules whose ``on`` fits are tried by
priority; the first that passes every gate fires and nothing else does. The
gates, in order, and their reason codes: ``disabled``, ``no_match``/``vetoed``,
``condition.*``, ``cooldown.<scope>``, ``limit.<scope>.<window>``,
``state_full`` (the state store could not count this firing: fail closed),
``probability``.

Cost is kept proportional to what an event can fire, not to the rule count:

* one RE2 set scan finds every pattern present; only rules with a pattern
  present (plus rules that match everything) are tried;
* each rule has a *plan* (``ruleset.Plan``, built by compile): the cooldown
  keys and budgets that can ever block it, so a rule set without cooldowns
  never touches the state store;
* the template context is built only when someone reads it.

Time comes from a clock and chance from a seeded RNG, so the same events and
seed always give the same decisions.

The engine derives nothing from the rule set: plans and candidate tables are
the rule set's own (``RuleSet.tables``), so an engine is cheap to make and an
``explain`` builds no tables of its own.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Collection, Iterable, Iterator
from typing import Any

from kryten_rules.clock import Clock, SystemClock
from kryten_rules.compile.ruleset import SCOPES, WINDOWS, Plan, Rule, RuleSet
from kryten_rules.engine.decision import Decision
from kryten_rules.engine.gates import match_miss, media_miss
from kryten_rules.engine.room import MemoryRoom, room_now
from kryten_rules.engine.state import MemoryStore, StateStore
from kryten_rules.engine.timers import Schedule
from kryten_rules.events import ChatEvent, EventKind, Media
from kryten_rules.ruleformat.patterns import normalise
from kryten_rules.senders import sender_ignored
from kryten_rules.trace import BLOCKED, FIRED, SKIPPED, WOULD_FIRE, Reason, TraceEntry
from kryten_rules.units import format_duration

log = logging.getLogger(__name__)

MAX_TEXT = 4_000  # CyTube cuts chat at a few hundred characters; anything longer is junk

STATE_FULL = Reason.STATE_FULL
# reason codes made once, so the hot path formats no strings
_COOLDOWN_REASON = {scope: Reason.cooldown(scope) for scope in SCOPES}
_LIMIT_REASON = {
    (scope, window): Reason.limit(scope, window)
    for scope in ("rule", "user", "global")
    for window in WINDOWS
}
STATE_FULL_DETAIL = "the state store is full of running cooldowns and budgets"
# The second element of every shadow rule's state key (``("rule", SHADOW, id)``):
# a name no CyTube user can have, and the rule id stays last for drop_rules.
SHADOW = "~shadow"




class Engine:
    """Evaluates events against a :class:`RuleSet`.

    ``swap`` replaces the rule set between two events (hot reload); state is
    keyed by rule id, so cooldowns and budgets carry over.
    """

    def __init__(
        self,
        ruleset: RuleSet,
        *,
        clock: Clock | None = None,
        seed: int | None = None,
        state: StateStore | None = None,
        channel: str = "",
        bot_name: str | None = None,
        ignore_users: Iterable[str] = (),
    ) -> None:
        self.clock = clock or SystemClock()
        self.rng = random.Random(seed)
        # shadow rules draw from their own RNG: trying one never changes a live draw
        self.shadow_rng = random.Random(seed)
        # v1.1 rule tests: the probability draw of the next evaluation, pinned (None: drawn)
        self.pinned_draw: float | None = None
        # `is None`, not `or`: an empty store has len 0 and is falsy
        self.state: StateStore = state if state is not None else MemoryStore(self.clock.now)
        self.room = MemoryRoom()
        self._channel = channel
        self.ignore_users = frozenset(u.lower() for u in ignore_users)
        self._bot_name = bot_name
        self._install(ruleset)
        # v1.1: each timer rule's turns, keyed by rule id (engine/timers.py)
        self.timers = Schedule(ruleset, self.clock.now())

    # --- rule set ------------------------------------------------------------

    def _install(self, ruleset: RuleSet) -> None:
        """Take over the rule set's tables (built once by compile, shared by every engine)."""
        tables = ruleset.tables
        self.ruleset = ruleset
        self._mention_index = tables.mention
        self._bot = (self._bot_name if self._bot_name is not None else ruleset.bot_name).lower()
        self._max_cooldown_mult = tables.max_cooldown_mult
        self._plans = tables.plans
        self._word_kinds = tables.word_kinds
        self._none = len(ruleset.rules)
        self._match = ruleset.match_bytes
        self._by_kind: dict[str, tuple[Any, int]] = {
            kind: (heads.__getitem__, first) for kind, (heads, first) in tables.by_kind.items()
        }
        self._sure = tables.sure
        self._shadow_ids = tables.shadow_ids
        self._timer_rules = tuple(r.index for r in ruleset.rules if r.on == EventKind.TIMER)
        # what a decision's context is built from besides the event (see Decision.context)
        self._decided_with = (ruleset, tables.mention, self.room, self._channel)

    @property
    def channel_name(self) -> str:
        return self._channel

    @channel_name.setter
    def channel_name(self, name: str) -> None:
        self._channel = name
        self._decided_with = (self.ruleset, self._mention_index, self.room, name)

    def swap(self, ruleset: RuleSet) -> None:
        """Install a new rule set; state of rules that are gone is dropped.

        All or nothing: the new set's tables are built on a copy of the engine,
        so whatever raises while building them leaves this engine, old rule set
        and all, exactly as it was. Only once all of it was built is it taken
        over, in one ``dict.update`` that cannot stop half-way.
        """
        staged = copy.copy(self)  # shares state, room and clock; own tables
        staged._install(ruleset)
        gone = {r.id for r in self.ruleset.rules} - {r.id for r in ruleset.rules}
        vars(self).update(vars(staged))
        self.timers.sync(ruleset, self.clock.now())  # unchanged timers keep their turns
        if gone:
            try:
                self.state.drop_rules(gone)
            except Exception:  # the new set is in place; stale counts are only unused
                log.exception("dropping the state of %d removed rule(s) failed", len(gone))

    # --- room state ------------------------------------------------------------

    def set_rank(self, user: str, rank: int) -> None:
        self.room.set_rank(user, rank)

    def apply_ranks(self, changes: Iterable[tuple[str, int | None]]) -> None:
        """Ranks as user events report them; ``None`` forgets the user (they left)."""
        for name, rank in changes:
            if rank is None:
                self.forget_user(name)
            else:
                self.set_rank(name, rank)

    def forget_user(self, user: str) -> None:
        self.room.forget_user(user)

    def rank_of(self, user: str) -> int:
        return self.room.rank_of(user)

    def set_media(self, media: Media | None) -> None:
        self.room.media = media

    # --- evaluation ------------------------------------------------------------

    def evaluate(
        self, event: ChatEvent, *, full_trace: bool = False, commit: bool = True
    ) -> Decision:
        """Decide one event. ``full_trace`` lists every rule of the event's kind
        (for ``explain``); otherwise rules whose patterns are absent are left out.

        ``commit=False`` decides without spending the firing rule's cooldowns
        and budgets: the caller spends them with :meth:`commit` once it knows
        the reply will be attempted, or drops the decision with its state
        untouched (the service when it is overloaded). Commit before the next
        event is evaluated, or that event is decided as if this one had not fired.

        This is the hot path of the service and of ``replay``: locals instead of
        attribute lookups, and the commonest case (the first candidate is a plain
        rule) decided without building the full candidate order.
        """
        now = event.at or self.clock.now()
        user = event.user
        key = user.lower()
        kind = event.kind
        room = self.room
        rank = event.rank
        if rank is None:
            rank = room.ranks.get(key, 0)
        elif user and room.ranks.get(key) != rank:
            self.set_rank(user, rank)
        if kind == "changemedia" and event.media is not None:
            room.media = event.media
        ignored = sender_ignored(user, key, self._bot, self.ignore_users)
        if ignored is not None:  # never evaluated, never in the room's history
            return Decision(event, None, (), ignored)

        if kind == "changemedia":
            text = event.media.title if event.media else ""
        else:
            text = normalise(event.text[:MAX_TEXT]) if event.text else ""
        match = self._match
        present: Collection[int] = _NONE_PRESENT
        if text and match is not None:
            present = match(text.encode("utf-8")) or _NONE_PRESENT
            if present and not text.isascii():
                present = self._recheck(text, present)
        fired: Rule | None = None
        trace: tuple[TraceEntry, ...] = ()
        shadow: list[Rule] = []
        tables = self._by_kind.get(kind)
        if kind == _TIMER:  # v1.1: a timer's turn tries that timer rule alone
            fired, trace = self._walk(
                self._timer_order(event.timer), key, present, rank, now, full_trace, shadow
            )
        elif full_trace:
            fired, trace = self._walk(
                [r.index for r in self.ruleset.rules if r.on == kind],
                key,
                present,
                rank,
                now,
                True,
                shadow,
            )
        elif tables is not None:
            # The first candidate in evaluation order, without building the order:
            # most events end here, with that rule firing or no candidate at all.
            head_of, first = tables
            if present:
                head = min(map(head_of, present))
                if head < first:
                    first = head
            if first < self._none:
                sure = self._sure[first]
                if sure is not None:
                    fired, trace = sure  # nothing to check, nothing to spend
                else:
                    order = self._order(kind, present)
                    fired, trace = self._walk(order, key, present, rank, now, False, shadow)
        make_context = None
        uncommitted = None
        if fired is not None:
            if self._sure[fired.index] is None:  # a sure rule has nothing to spend
                if commit:
                    self._spend(fired, key, now)
                else:
                    uncommitted = (key, now)
            # captured now, built on first read (the room moves on, and a reload may
            # swap the rule set, whose pattern indices `present` refers to)
            make_context = (self._decided_with, text, present, rank, now, *room_now(room))
        if shadow:
            make_context = (self._decided_with, text, present, rank, now, *room_now(room))
        if kind == "chatmsg" and text:
            room.history.append((user, text))
            room.times.append(now)
            room.lines += 1
        decision = Decision(
            event, fired, trace, None, make_context, tuple(shadow), self._shadow_ids
        )
        decision._uncommitted = uncommitted
        return decision

    def tick(self, at: float | None = None, *, commit: bool = True) -> list[Decision]:
        """v1.1: give every timer whose turn has come by ``at`` (default: now) its turn.

        Each due timer is evaluated once, at ``at``, as an event of kind
        ``timer`` through the same gates as any event; its next turn is then the
        next multiple of its ``every`` (``engine/timers.py``), whether it fired or not.
        """
        return list(self.turns(at, commit=commit))

    def turns(self, at: float | None = None, *, commit: bool = True) -> Iterator[Decision]:
        """:meth:`tick`, one decision at a time: the service admits (and so spends)
        each before the next timer is decided, as it does for chat lines."""
        now = self.clock.now() if at is None else at
        for rule_id in self.timers.due(now):
            self.timers.done(rule_id, now)
            event = ChatEvent(kind=EventKind.TIMER, at=now, timer=rule_id)
            yield self.evaluate(event, commit=commit)

    def _timer_order(self, rule_id: str) -> tuple[int, ...]:
        """The timer rules a timer event tries: the one whose turn it is, or all (explain)."""
        if not rule_id:
            return self._timer_rules
        rule = self.ruleset.by_id.get(rule_id)
        return (rule.index,) if rule is not None and rule.on == EventKind.TIMER else ()

    def commit(self, decision: Decision) -> None:
        """Spend what a decision made with ``evaluate(commit=False)`` fired; once only."""
        pending = decision._uncommitted
        if pending is not None and decision.rule is not None:
            decision._uncommitted = None
            self._spend(decision.rule, *pending)

    def _order(self, kind: str, present: Collection[int]) -> list[int]:
        """Every candidate rule of this event, in evaluation order."""
        cand = self.ruleset.candidates.get(kind, {})
        order = {i for p in present for i in cand.get(p, ())}
        order.update(self.ruleset.always.get(kind, ()))
        return sorted(order)

    def _walk(
        self,
        order: Iterable[int],
        user: str,
        present: Collection[int],
        rank: int,
        now: float,
        full: bool,
        shadow: list[Rule],
    ) -> tuple[Rule | None, tuple[TraceEntry, ...]]:
        """Try rules in order until one fires; the rule (or None) and the trace.

        A shadow rule that passes every gate is appended to ``shadow``, spends
        its own (shadow) state there and then, and the walk goes on.
        """
        rules = self.ruleset.rules
        plans = self._plans
        trace: list[TraceEntry] = []
        for i in order:
            plan = plans[i]
            if plan.trivial and not full:
                trace.append(plan.fired)
                return rules[i], tuple(trace)
            entry = self._try(rules[i], user, present, rank, now, full)
            trace.append(entry)
            if entry.outcome == FIRED:
                return rules[i], tuple(trace)
            if entry.outcome == WOULD_FIRE:
                shadow.append(rules[i])
                self._spend(rules[i], user, now)
        return None, tuple(trace)

    def _recheck(self, text: str, present: Collection[int]) -> Collection[int]:
        """RE2's \\b is ASCII-only: re-check words that stand next to non-ASCII text."""
        doubtful = self._word_kinds.intersection(present)
        if doubtful:
            gone = {i for i in doubtful if self.ruleset.regex(i).search(text) is None}
            if gone:
                return [i for i in present if i not in gone]
        return present

    def _try(
        self,
        rule: Rule,
        user: str,
        present: Collection[int],
        rank: int,
        now: float,
        full: bool = False,
    ) -> TraceEntry:
        if not rule.enabled:
            return TraceEntry(rule.id, SKIPPED, Reason.DISABLED)
        plan = self._plans[rule.index]
        if full or not plan.single_group:
            miss = match_miss(rule, present)
            if miss:
                return TraceEntry(rule.id, BLOCKED if miss is Reason.VETOED else SKIPPED, miss)
        if plan.conditions:
            cond = self._condition(rule, user, rank, now)
            if cond:
                return TraceEntry(rule.id, BLOCKED, cond[0], cond[1])
        if plan.cooldowns or plan.budgets:
            # v1.1: an event without a sender (changemedia, timer) uses no rank multiplier
            mult_cd, mult_lim = self._multipliers(rank) if user else _NO_MULTIPLIER
            left = self._cooldown(plan, rule.id, user, now, mult_cd)
            if left:
                where = self._set_by(left[0], rule, left[2])
                return TraceEntry(
                    rule.id, BLOCKED, left[0], f"{format_duration(left[1])} left, set by {where}"
                )
            spent = self._limits(plan, rule.id, user, now, mult_lim)
            if spent:
                return TraceEntry(rule.id, BLOCKED, spent[0], spent[1])
            if not self.state.has_room(self._spend_keys(plan, rule.id, user)):
                # Never fire what cannot be counted: that would lift its limits.
                return TraceEntry(rule.id, BLOCKED, STATE_FULL, STATE_FULL_DETAIL)
        if rule.probability < 1.0:
            draw = self.pinned_draw
            if draw is None:
                draw = (self.shadow_rng if plan.shadow else self.rng).random()
            if draw >= rule.probability:
                return TraceEntry(
                    rule.id,
                    BLOCKED,
                    Reason.PROBABILITY,
                    f"drew {draw:.2f}, needs < {rule.probability:g}",
                )
        return plan.fired

    def _condition(
        self, rule: Rule, user: str, rank: int, now: float
    ) -> tuple[Reason, str] | None:
        if rule.rank_min is not None and rank < rule.rank_min:
            return Reason.CONDITION_RANK, f"rank {rank} < {rule.rank_min}"
        if rule.rank_max is not None and rank > rule.rank_max:
            return Reason.CONDITION_RANK, f"rank {rank} > {rule.rank_max}"
        if rule.users is not None and user not in rule.users:
            return Reason.CONDITION_USERS, f"{user} is not listed"
        if user in rule.not_users:
            return Reason.CONDITION_NOT_USERS, f"{user} is excluded"
        if rule.media is not None:
            why = media_miss(rule, self.room.media)
            if why:
                return Reason.CONDITION_MEDIA, why
        if rule.chat_lines:
            return self._chat_miss(rule, now)
        return None

    def _chat_miss(self, rule: Rule, now: float) -> tuple[Reason, str] | None:
        """v1.1 ``when.chat``: too few lines from people in the window ending now."""
        lines = self.room.lines_since(now - rule.chat_within, rule.chat_lines)
        if lines >= rule.chat_lines:
            return None
        within = format_duration(rule.chat_within)
        return Reason.CONDITION_CHAT, f"{lines} of {rule.chat_lines} lines from people in {within}"

    def _multipliers(self, rank: int) -> tuple[float, float]:
        for m in self.ruleset.ranks:
            if m.applies(rank):
                return m.cooldown, m.limit
        return 1.0, 1.0

    @staticmethod
    def _key(kind: str, rule_id: str, user: str, shadow: bool = False) -> tuple[str, ...] | None:
        """The state key of one scope; None for a per-user scope of an event with no user.

        A shadow rule's keys carry :data:`SHADOW` second: its own namespace.
        """
        if shadow:
            key = Engine._key(kind, rule_id, user)
            return None if key is None else (key[0], SHADOW, *key[1:])
        if kind in ("global", "count_global"):
            return (kind,)
        if kind in ("rule", "count_rule"):
            return (kind, rule_id)
        if not user:  # media changes have no sender: nothing per-user applies
            return None
        if kind == "user_rule":
            return (kind, user, rule_id)
        return (kind, user)

    def _cooldown(
        self, plan: Plan, rule_id: str, user: str, now: float, mult: float
    ) -> tuple[Reason, float, float] | None:
        """The first running cooldown: its reason code, the time left, its base duration."""
        for scope in plan.cooldowns:
            key = self._key(scope, rule_id, user, plan.shadow)
            running = self.state.cooldown(key) if key else None
            if running is not None:
                left = running[0] + running[1] * mult - now
                if left > 1e-9:
                    return _COOLDOWN_REASON[scope], left, running[1]
        return None

    def _set_by(self, reason: Reason, rule: Rule, base: float) -> str:
        """Where a blocking cooldown was set: the file's ``limits`` or a rule (off the hot path).

        A firing starts a shared cooldown with the longer of its rule's and the
        file's duration, so the running cooldown's duration says which it was.
        """
        scope = reason.removeprefix("cooldown.")
        if scope in ("rule", "user_rule"):
            return f"rule {rule.id}"
        rs = self.ruleset
        budget = rs.global_budget if scope == "global" else rs.user_budget
        if budget.cooldown > 0 and abs(base - budget.cooldown) < 1e-9:
            return budget.source or f"limits.{scope}"
        for r in rs.rules:
            if r.shared_limits and abs(r.cooldowns.get(scope, 0.0) - base) < 1e-9:
                return f"cooldown.{scope} of rule {r.id}"
        return f"a rule's cooldown.{scope}"

    def _limits(
        self, plan: Plan, rule_id: str, user: str, now: float, mult: float
    ) -> tuple[Reason, str] | None:
        for scope, kind, windows in plan.budgets:
            key = self._key(kind, rule_id, user, plan.shadow)
            if key is None:
                continue
            for window, limit in windows:
                # A multiplier never rounds a budget up; a non-zero budget stays >= 1.
                allowed = max(1, int(limit * mult)) if limit > 0 else 0
                used = self.state.count_in(key, WINDOWS[window], now)
                if used >= allowed:
                    return _LIMIT_REASON[scope, window], f"{used} of {allowed} used"
        return None

    def _spend_keys(self, plan: Plan, rule_id: str, user: str) -> list[tuple[str, ...]]:
        """The state keys a firing of this plan writes."""
        kinds = [scope for scope, _ in plan.spend_cooldowns]
        kinds += [kind for kind, _, _ in plan.spend_budgets]
        keys = [self._key(kind, rule_id, user, plan.shadow) for kind in kinds]
        return [k for k in keys if k is not None]

    def _spend(self, rule: Rule, user: str, now: float) -> None:
        """Count a firing rule in every scope and budget it touches."""
        plan = self._plans[rule.index]
        for scope, base in plan.spend_cooldowns:
            key = self._key(scope, rule.id, user, plan.shadow)
            if key is not None:
                self.state.start_cooldown(key, now, base, now + base * self._max_cooldown_mult + 1)
        for kind, span, keep in plan.spend_budgets:
            key = self._key(kind, rule.id, user, plan.shadow)
            if key is not None:
                self.state.record(key, now, now + span + 1, keep)


_NONE_PRESENT: tuple[int, ...] = ()
# a plain str: an enum member looked up and compared costs ~100 ns on every event
_TIMER: str = EventKind.TIMER.value
_NO_MULTIPLIER = (1.0, 1.0)



__all__ = ["Decision", "Engine", "TraceEntry"]
