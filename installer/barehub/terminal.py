"""Text for root's terminal. Much of what barehub prints comes from places another user writes: the hub's
run record (the hub user's), user names from the hub's API, file names in the hub's directories. Their
control characters (ESC sequences that rewrite the screen or the window title, carriage returns that hide a
line) are shown as escapes instead of being sent to the terminal.
"""
from __future__ import annotations

import logging
import unicodedata

KEPT = {"\n", "\t"}


def printable(text: str) -> str:
    """`text` with every control and format character but newline and tab written as a \\xNN/\\uNNNN escape."""
    return "".join(ch if ch in KEPT or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
                   else ascii(ch)[1:-1] for ch in text)


class PrintableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))
