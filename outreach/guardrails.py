"""What a generated text must be before a patient sees it; anything else means the
fallback. Plain text (no HTML, no links), not empty, not cut off, short."""

import re

# One or two sentences; well inside every channel's limit (SMS's 1,600, Telegram's 4,096).
MAX_CHARACTERS = 400
_HTML = re.compile(r"<\s*/?\s*[a-zA-Z!]")
_LINK = re.compile(
    r"(https?://|www\.|\b[\w-]+\.(com|org|net|io|info|de|ly|me|app|link)\b|\[[^\]]*\]\()",
    re.IGNORECASE,
)


def checked_text(text: str, finish_reason: str) -> tuple[str, str]:
    """(the text to send, "") or ("", why it is refused)."""
    if finish_reason == "length":
        return "", "cut_off"
    if finish_reason == "content_filter":
        return "", "refused"
    text = text.strip().strip('"').strip()
    if not text:
        return "", "empty"
    if len(text) > MAX_CHARACTERS:
        return "", "too_long"
    if _HTML.search(text):
        return "", "html"
    if _LINK.search(text):
        return "", "link"
    if "\x00" in text or any(ord(c) < 32 and c not in "\n\t" for c in text):
        return "", "control_characters"
    return text, ""
