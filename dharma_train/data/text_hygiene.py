"""Answer text as a reader sees it: byte-order marks, Windows line ends and decomposed accents are fixed and counted.

A reference keeping a BOM or CRLF line ends costs a perfect transcription its score, and as a training target it
teaches the model to emit them; decomposed (NFD) accents train NFD output. Each fix is returned with a reason so
the load report counts it. A text file that is not UTF-8 is refused with the encoding it most likely has and the
command that converts it.
"""

from __future__ import annotations

import unicodedata

BOM = "\ufeff"
WINDOWS_1252_ONLY = frozenset(range(0x80, 0xA0))  # Windows-1252's curly quotes, dashes, €: controls in ISO-8859-1


def strip_bom(text: str, what: str) -> tuple[str, list[tuple[str, str]]]:
    """`text` without a leading byte-order mark, and the fix when there was one."""
    if not text.startswith(BOM):
        return text, []
    return text.lstrip(BOM), [("removed_bom", f"a byte-order mark at the start of {what}")]


def clean_text(text: str, what: str) -> tuple[str, list[tuple[str, str]]]:
    """One answer value with a leading BOM removed, line ends as \\n and NFC accents; the fixes it needed."""
    text, fixes = strip_bom(text, what)
    if "\r" in text:
        crlf = text.count("\r\n")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        fixes.append(("normalized_newlines", f"{what}: {crlf} CRLF line end(s)" if crlf else f"{what}: CR line ends"))
    composed = unicodedata.normalize("NFC", text)
    if composed != text:
        fixes.append(("normalized_unicode", f"{what}: {len(text) - len(composed)} combining mark(s) composed (NFC)"))
    return composed, fixes


def merge_fixes(fixes: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One fix per reason (a row counts once per reason), the details of several fields joined."""
    merged: dict[str, list[str]] = {}
    for reason, detail in fixes:
        merged.setdefault(reason, []).append(detail)
    return [(reason, "; ".join(details)) for reason, details in merged.items()]


def not_utf8(data: bytes, error: UnicodeDecodeError, what: str) -> str:
    """Why `data` cannot be read, the encoding it most likely has, and the command that converts it to UTF-8."""
    encoding, sample = likely_encoding(data)
    bad = data[error.start:error.start + 1].hex()
    return (f"{what} is not UTF-8 (byte 0x{bad} at offset {error.start}); it is most likely {encoding}{sample}: "
            f"convert it to UTF-8, e.g. `iconv -f {_iconv_name(encoding)} -t UTF-8 IN > OUT`")


def likely_encoding(data: bytes) -> tuple[str, str]:
    """The encoding a non-UTF-8 text most likely has, and how a stretch of it reads in that encoding."""
    if data.startswith(b"\xff\xfe") or data[1::2].count(0) > len(data) // 4:
        return "UTF-16LE", ""  # what Windows Notepad calls "Unicode": ASCII letters with a 0 byte after each
    if data.startswith(b"\xfe\xff") or data[0::2].count(0) > len(data) // 4:
        return "UTF-16BE", ""
    high = [byte for byte in data if byte >= 0x80]
    try:
        decoded = data.decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D: not Windows-1252, likely a DOS code page
        return "ISO-8859-1 (Latin-1) or a DOS code page such as CP850", ""
    name = "Windows-1252" if any(byte in WINDOWS_1252_ONLY for byte in high) else \
        "Windows-1252 (ISO-8859-1 reads it the same)"
    return name, f" (it reads as {_sample(decoded)!r})"


def _sample(text: str) -> str:
    """Up to 40 characters around the first non-ASCII one, so the user can see the guess reads right."""
    index = next((i for i, char in enumerate(text) if ord(char) >= 0x80), 0)
    return " ".join(text[max(0, index - 20):index + 20].split())


def _iconv_name(encoding: str) -> str:
    if encoding.startswith("UTF-16"):
        return encoding
    return "WINDOWS-1252" if "1252" in encoding else "CP850"
