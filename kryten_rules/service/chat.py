"""``kryten-rules chat``: talk to the bot from a terminal, through NATS.

The client plays Kryten-Robot's part: each line typed becomes a ``chatMsg``
envelope on ``kryten.events.cytube.{channel}.chatmsg`` exactly as the bridge
publishes it, and the bot's ``say``/``pm`` commands are read back from
``kryten.robot.command``. The bot runs in the same process (so the embedded
NATS works), and the trace of each decision is printed under the line.

Lines that start with ``/`` are client commands: ``/user NAME``, ``/rank R``,
``/media TITLE [DURATION]``, ``/pm TEXT``, ``/join``, ``/help``, ``/quit``.

Standard input is read by a daemon thread, so Ctrl-C quits at once even while
a line is half typed; on a terminal, output that arrives while the prompt is
shown is printed above it, and the prompt drawn again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, TextIO

from kryten_rules.config import ServiceConfig
from kryten_rules.engine.evaluate import Decision
from kryten_rules.service.bot import Bot
from kryten_rules.units import parse_duration, parse_rank
from kryten_rules.wire import COMMAND_SUBJECT, envelope, event_subject

# Several users, a few seconds apart: the global cooldown (5s) passes between
# lines, and one line shows a cooldown blocking a reply.
DEMO_SCRIPT = (
    "/user alice",
    "hey cynthia, what's your favourite fight scene?",
    "cynthia??",
    "/user bob",
    "!help",
    "/media China O'Brien 90m",
    "/user carol",
    "cynthia, any spoilers for this one?",
    "/user dave",
    "cynthia, did you do your own stunts in this?",
    "/user erin",
    "/pm hi cynthia, are you the real one?",
    "/quit",
)


COMMANDS = "/user NAME, /rank RANK, /media TITLE [DURATION], /pm TEXT, /join, /help, /quit"

NEXT_STEPS = """\
That was the demo. Try next:
  kryten-rules chat                  talk to the bot yourself (/help lists the commands)
  kryten-rules init mybot            your own copy: config, rules, prompts, a rule test, CI
  cd mybot && kryten-rules explain "hey cynthia" --config kryten-rules.yaml
                                     why it would or would not answer a line, rule by rule"""


def banner(config: ServiceConfig, url: str, user: str, rank: int) -> str:
    where = f" (config {config.path})" if config.path else ""
    return (
        f"connected to {url} as {user} (rank {rank}) in #{config.cytube.channel}; "
        f"talking to {config.bot_name}{where}.\n"
        "Type a line and press Enter to say it in the channel; each decision's trace "
        "is printed under it.\n"
        f"Commands: {COMMANDS}. Quit with /quit, Ctrl-D or Ctrl-C."
    )


class ChatClient:
    def __init__(
        self,
        bot: Bot,
        *,
        user: str = "you",
        rank: int = 1,
        out: TextIO = sys.stdout,
        interactive: bool = False,
    ) -> None:
        self.bot = bot
        self.user = user
        self.rank = rank
        self.out = out
        self.interactive = interactive
        self.prompt_shown = False
        cy = bot.config.cytube
        self.channel, self.domain = cy.channel, cy.domain

    @property
    def prompt(self) -> str:
        return f"{self.user}> "

    def show_prompt(self) -> None:
        if self.interactive and not self.prompt_shown:
            self.out.write(self.prompt)
            self.out.flush()
            self.prompt_shown = True

    def say(self, text: str) -> None:
        if self.prompt_shown:  # print above the prompt, then draw it again
            self.out.write("\r\x1b[K" + text + "\n" + self.prompt)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def on_decision(self, d: Decision) -> None:
        if d.event.kind == "adduser" and d.fired is None:
            return
        tried = ", ".join(
            f"{t.rule} {t.outcome}"
            + (
                f" ({t.reason}{': ' + t.detail if t.detail else ''})"
                if t.reason and t.reason != "no_match"
                else ""
            )
            for t in d.trace
            if t.reason != "no_match"
        )
        self.say(f"    rules: {tried or 'no rule matched'}")

    async def _on_command(self, msg: Any) -> None:
        try:
            cmd = json.loads(msg.data)
            args = cmd.get("args", {})
            if cmd.get("command") == "say":
                self.say(f"{self.bot.config.bot_name}> {args.get('message')}")
            elif cmd.get("command") == "pm":
                self.say(f"{self.bot.config.bot_name} (pm to {args.get('to')})> {args.get('msg')}")
        except (ValueError, AttributeError):
            pass
        if msg.reply:  # answer as Kryten-Robot does, so request-style senders get a reply
            await msg.respond(json.dumps({"service": "robot", "success": True}).encode())

    async def publish(self, event_name: str, payload: dict[str, Any]) -> None:
        data = envelope(event_name, payload, channel=self.channel, domain=self.domain)
        assert self.bot.bus is not None
        await self.bot.bus.publish(event_subject(self.channel, event_name), data)

    async def line(self, text: str) -> bool:
        """Handle one typed line; False when the user wants to quit."""
        text = text.rstrip("\n")
        if not text.strip():
            return True
        now_ms = int(time.time() * 1000)
        if text.startswith("/"):
            cmd, _, rest = text[1:].partition(" ")
            if cmd in ("quit", "exit"):
                return False
            if cmd == "user" and rest:
                self.user = rest.strip()
                await self.publish(
                    "addUser", {"name": self.user, "rank": self.rank, "meta": {}, "profile": {}}
                )
            elif cmd == "rank" and rest:
                try:
                    self.rank = parse_rank(rest.strip())
                except ValueError as exc:
                    self.say(f"  {exc}")
                    return True
                await self.publish("setUserRank", {"name": self.user, "rank": self.rank})
            elif cmd == "join":
                await self.publish(
                    "addUser", {"name": self.user, "rank": self.rank, "meta": {}, "profile": {}}
                )
            elif cmd == "media" and rest:
                title, duration = rest, 5400.0
                head, _, last = rest.rpartition(" ")
                with contextlib.suppress(ValueError):
                    duration, title = parse_duration(last), head or rest
                await self.publish(
                    "changeMedia",
                    {
                        "id": "demo",
                        "title": title,
                        "seconds": duration,
                        "duration": f"{int(duration // 60)}:{int(duration % 60):02d}",
                        "type": "yt",
                        "meta": {},
                        "currentTime": 0,
                        "paused": False,
                    },
                )
            elif cmd == "pm" and rest:
                await self.publish(
                    "pm",
                    {
                        "username": self.user,
                        "msg": rest,
                        "meta": {},
                        "time": now_ms,
                        "to": self.bot.config.bot_name,
                    },
                )
            else:
                self.say(f"commands: {COMMANDS}")
            return True
        await self.publish(
            "chatMsg", {"username": self.user, "msg": text, "meta": {}, "time": now_ms}
        )
        return True

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until the bot has nothing in progress (scripted mode)."""
        await asyncio.sleep(0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pacer = self.bot.pacer
            if self.bot.replies.pending == 0 and (pacer is None or pacer.pending == 0):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)


def _stdin_lines() -> asyncio.Queue[str]:
    """Lines of standard input, read by a daemon thread ("" at the end).

    A thread blocked in ``readline`` must not keep the process alive: with
    ``asyncio.to_thread`` Ctrl-C waited for the next Enter.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        while True:
            try:
                line = sys.stdin.readline()
            except (OSError, ValueError):
                line = ""
            with contextlib.suppress(RuntimeError):  # the loop is gone: we are exiting
                loop.call_soon_threadsafe(queue.put_nowait, line)
            if not line:
                return

    threading.Thread(target=read, name="chat-stdin", daemon=True).start()
    return queue


async def run_chat(
    config: ServiceConfig,
    *,
    user: str,
    rank: int,
    script: Iterable[str] | None,
    interactive: bool,
    pause: float = 5.5,
    quiet: bool = False,
) -> None:
    client_box: list[ChatClient] = []
    bot = Bot(
        config,
        on_decision=lambda d: client_box[0].on_decision(d) if client_box else None,
        watch_interval=1.0,
        serve_http=False,
    )
    await bot.start()
    client = ChatClient(bot, user=user, rank=rank, interactive=interactive and script is None)
    client_box.append(client)
    assert bot.bus is not None
    await bot.bus.subscribe(COMMAND_SUBJECT, client._on_command)
    await client.publish("addUser", {"name": user, "rank": rank, "meta": {}, "profile": {}})
    if not quiet:
        client.say(banner(config, bot.safe_url, user, rank))
    interrupted = False
    try:
        if script is not None:
            for text in script:
                if not text.startswith("/") or text.startswith("/pm "):
                    shown = text if not text.startswith("/pm ") else f"(pm) {text[4:]}"
                    client.say(f"{client.user}> {shown}")
                if not await client.line(text):
                    break
                await client.settle()
                if not text.startswith("/") or text.startswith("/pm "):
                    await asyncio.sleep(pause)
            if not quiet:
                client.say("")
                client.say(NEXT_STEPS)
        else:
            lines = _stdin_lines()
            while True:
                client.show_prompt()
                text = await lines.get()
                client.prompt_shown = False  # Enter moved the cursor past it
                if not text:
                    if interactive:
                        client.say("")
                    break
                if not await client.line(text):
                    break
                # the decision's trace (and a quick reply) before the next prompt
                await client.settle(timeout=30.0 if not interactive else 10.0)
    except asyncio.CancelledError:  # Ctrl-C: leave now, do not wait for replies
        interrupted = True
        raise
    finally:
        client.prompt_shown = False
        await bot.stop(grace=0.0 if interrupted else 3.0)
