"""Masking credentials in text the service logs or reports.

Operators put secrets where they are easy to write: ``nats://bot:s3cret@host``,
a model's ``api_base`` with ``user:key@``, or ``?token=`` in a URL. Whatever we
log, answer (health, commands), publish (lifecycle) or write (response log)
goes through :func:`mask_credentials` first, so a secret never leaves the
process in our own words. The service config holds only *names* of
environment variables for API keys; this is the net for what slips through a
URL.

Both patterns anchor on literal text (``://`` and ``?``/``&``) and stop at the
first separator, so masking is linear in the length of the text.
"""

from __future__ import annotations

import logging
import re

MASK = "***"
# userinfo of a URL: between "://" and the last "@" before the path, as urllib
# (and so nats-py) splits "u:p@ss@host"
_USERINFO = re.compile(r"://([^\s/]+)@")
# secrets passed as query parameters. The value stops at a bare `"`: replies
# and lifecycle events are masked as JSON text, and eating the closing quote
# made the whole payload unparseable; `\"` (an escaped quote) is part of it.
_QUERY_SECRET = re.compile(
    r"([?&](?:password|passwd|pass|pwd|token|auth_token|secret|api_key|apikey|key|auth)=)"
    r'(?:\\.|[^&\s#"\\])+',
    re.IGNORECASE,
)


def _userinfo(m: re.Match[str]) -> str:
    user, sep, _password = m[1].partition(":")
    # "user:password@": the user name helps an operator and is kept; a lone
    # "token@" (NATS token auth) is all secret.
    return f"://{user}:{MASK}@" if sep else f"://{MASK}@"


def mask_credentials(text: str) -> str:
    """``text`` with URL passwords, tokens and secret query parameters replaced by ``***``."""
    if "://" not in text and "=" not in text:
        return text
    return _QUERY_SECRET.sub(rf"\1{MASK}", _USERINFO.sub(_userinfo, text))


class MaskingFormatter(logging.Formatter):
    """A log formatter that masks credentials in the whole line, traceback included.

    Our own messages already mask the URLs they name; this catches the rest
    (a library's message, an exception's text).
    """

    def format(self, record: logging.LogRecord) -> str:
        return mask_credentials(super().format(record))
