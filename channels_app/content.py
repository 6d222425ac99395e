"""Checks a message's content against what its channel accepts, at creation time, and
cleans it for the places that show it as HTML (the web inbox, e-mail).

A message that the provider would refuse (too long, HTML it cannot parse) is refused
when the care team writes it, not discovered as a failed delivery later. Tags and
attributes are both allow-listed: only links to http(s), mailto and tel, and Telegram's
spoiler class. What was stored before these checks, or arrives some other way, is cleaned
again by safe_html wherever a browser or a mail client would render it.
"""

import html
import re
from html.parser import HTMLParser

import nh3
from django.core.exceptions import ValidationError

from channels_app.formatting import PART_LENGTH, message_parts, to_plain_text

# Telegram's HTML parse mode accepts only these tags (Bot API, "HTML style"); its parser
# refuses the message for any other ("Unsupported start tag").
TELEGRAM_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
     "code", "pre", "blockquote", "tg-emoji"}
)  # fmt: skip
# Tags people write that Telegram refuses but that mean a line break: accepted here, and
# turned into line breaks before sending (formatting.to_telegram_html).
LINE_BREAK_TAGS = frozenset({"br", "p"})
WRITABLE_TAGS = TELEGRAM_TAGS | LINE_BREAK_TAGS
VOID_TAGS = frozenset({"br"})
# The only attributes a tag may carry (Telegram documents no others that we use).
LINK_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
ATTRIBUTES = {"a": {"href"}, "span": {"class"}, "tg-emoji": {"emoji-id"}}
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):", re.IGNORECASE)
# Telegram and WhatsApp take 4096 characters a message; longer content is sent in parts
# (formatting.message_parts), at most MAX_PARTS: each takes a slot of the chat's limit
# (a second on Telegram, six on WhatsApp), and a patient reads a long text better on the
# web. SMS is never split by us: Twilio concatenates up to 1600 characters, so anything
# longer is refused when the message is written.
MAX_PARTS = 10
MAX_LENGTH = {"telegram": 4096 * 10, "whatsapp": 4096 * 10, "sms": 1600, "email": 100_000,
              "web": 100_000}  # fmt: skip


class _TagChecker(HTMLParser):
    def __init__(self, allowed: frozenset[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.allowed = allowed
        self.open: list[str] = []
        self.text_length = 0
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.allowed:
            self.problems.append(f"<{tag}> is not allowed")
            return
        self.problems.extend(_attribute_problems(tag, attrs))
        if tag == "span" and dict(attrs).get("class") != "tg-spoiler":
            self.problems.append('<span> needs class="tg-spoiler" (Telegram\'s spoiler)')
        elif tag not in VOID_TAGS:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/>: the same as <br>; any other self-closed tag never closes for Telegram.
        if tag in VOID_TAGS:
            return
        self.problems.append(f"<{tag}/> is not allowed; write <{tag}>...</{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_TAGS:
            return
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> does not close the last opened tag")
        else:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text_length += len(data)


def _attribute_problems(tag: str, attrs: list[tuple[str, str | None]]) -> list[str]:
    problems = []
    for name, value in attrs:
        allowed = ATTRIBUTES.get(tag, set())
        if name not in allowed:
            listed = f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""
            problems.append(f"{name} is not allowed on <{tag}>{listed}")
        elif name == "href" and not _safe_link(value or ""):
            problems.append("<a> href must start with http://, https://, mailto: or tel:")
        elif name == "emoji-id" and not (value or "").isdecimal():
            problems.append("<tg-emoji> emoji-id must be a number")
    return problems


def _safe_link(href: str) -> bool:
    # An explicit scheme only: browsers drop tabs and newlines inside a scheme
    # ("java\tscript:"), which the pattern does not match either.
    found = _SCHEME.match(href.strip())
    return bool(found) and found.group(1).lower() in LINK_SCHEMES


# Relative links would point into this site; a message links elsewhere or nowhere.
_CLEANER = nh3.Cleaner(
    tags=set(WRITABLE_TAGS),
    attributes={"a": {"href"}, "*": set()},
    tag_attribute_values={"span": {"class": {"tg-spoiler"}}},
    url_schemes=set(LINK_SCHEMES),
    url_relative="deny",
)


def safe_html(body: str, fmt: str) -> str:
    """What a browser or a mail client may render of a message: the tags we accept, only
    href (http, https, mailto, tel) on links and Telegram's spoiler class on spans."""
    if fmt != "html":
        return html.escape(body).replace("\n", "<br>")
    return _CLEANER.clean(body)


def validate_content(channel: str, content: str, fmt: str, *, may_be_empty: bool = False) -> None:
    """`may_be_empty`: the message carries an attachment, which may go without a text."""
    if not content.strip():
        if may_be_empty and fmt in ("text", "html"):
            return
        raise ValidationError({"content": "The message is empty."})
    if fmt not in ("text", "html"):
        raise ValidationError({"format": f"{fmt!r} is not a format; use text or html."})
    length = len(content)
    if fmt == "html":
        checker = _TagChecker(WRITABLE_TAGS)
        checker.feed(content)
        checker.close()
        if checker.open:
            checker.problems.append(f"<{checker.open[-1]}> is never closed")
        if checker.problems:
            allowed = ", ".join(sorted(WRITABLE_TAGS))
            raise ValidationError(
                {"content": f"HTML not accepted: {checker.problems[0]} (allowed tags: {allowed})."}
            )
        length = checker.text_length  # tags do not count toward the limit
    if channel == "sms":
        length = len(to_plain_text(content, fmt))  # what the SMS will say
    limit = MAX_LENGTH.get(channel)
    if limit is not None and length > limit:
        raise ValidationError(
            {"content": f"The message has {length} characters; {channel} allows {limit}."}
        )
    parts = len(message_parts(channel, content, fmt)) if channel in PART_LENGTH else 1
    if parts > MAX_PARTS:
        problem = (
            f"The message would go in {parts} parts on {channel}; at most {MAX_PARTS} "
            f"({PART_LENGTH[channel]} characters each, cut between paragraphs)."
        )
        raise ValidationError({"content": problem})
