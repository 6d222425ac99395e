"""Content as each platform takes it: Telegram HTML, WhatsApp markup, plain text for SMS.

Messages are written once, as plain text or in the small HTML dialect Telegram accepts
(content.py checks it at creation). Here they are turned into what each platform
shows, and long ones are cut into parts on paragraph, then line, then word boundaries,
closing the tags open at a cut and opening them again in the next part.
"""

import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser

# WhatsApp's markup for the HTML tags that have one; other tags keep only their text.
_WHATSAPP_MARKS = {"b": "*", "strong": "*", "i": "_", "em": "_", "s": "~", "strike": "~",
                   "del": "~", "code": "```", "pre": "```"}  # fmt: skip
_BLOCK_BREAKS = {"br": "\n", "blockquote": "\n"}


@dataclass(frozen=True)
class _Token:
    kind: str  # "start", "end", "text"
    tag: str = ""
    raw: str = ""  # the tag as written (start tags keep their attributes)
    text: str = ""  # decoded text


class _Tokenizer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tokens: list[_Token] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tokens.append(_Token("start", tag, self.get_starttag_text() or f"<{tag}>"))
        if tag == "br":
            self.tokens.append(_Token("end", tag, ""))

    def handle_endtag(self, tag) -> None:
        if tag != "br":
            self.tokens.append(_Token("end", tag, f"</{tag}>"))

    def handle_data(self, data) -> None:
        self.tokens.append(_Token("text", text=data))


def tokens(content: str, fmt: str) -> list[_Token]:
    if fmt != "html":
        return [_Token("text", text=content)]
    parser = _Tokenizer()
    parser.feed(content)
    parser.close()
    return parser.tokens


def to_plain_text(content: str, fmt: str) -> str:
    """Readable text: tags dropped, line breaks kept, a link's address after its text."""
    return _flatten(content, fmt, marks={})


def to_whatsapp(content: str, fmt: str) -> str:
    """WhatsApp's *bold*, _italic_, ~strike~ and ```code``` from our HTML."""
    return _flatten(content, fmt, marks=_WHATSAPP_MARKS)


def _flatten(content: str, fmt: str, *, marks: dict[str, str]) -> str:
    """HTML to text: tags with a mark become it, line-breaking tags a newline, links
    their text and then their address; every other tag is dropped."""
    if fmt != "html":
        return content
    out: list[str] = []
    links: list[str] = []
    for token in tokens(content, fmt):
        if token.kind == "text":
            out.append(token.text)
        elif token.tag in marks and token.kind in ("start", "end"):
            out.append(marks[token.tag])
        elif token.kind == "start" and token.tag in _BLOCK_BREAKS:
            out.append(_BLOCK_BREAKS[token.tag])
        elif token.tag == "p":
            out.append(_paragraph_break(out))
        elif token.kind == "start" and token.tag == "a":
            links.append(_href(token.raw))
        elif token.kind == "end" and token.tag == "a" and links:
            href = links.pop()
            out.append(f" ({href})" if href else "")
    return "".join(out).strip()


def to_telegram_html(content: str, fmt: str) -> str:
    """Telegram's HTML mode: our HTML (checked at creation) with <br> and paragraphs made
    line breaks, since Telegram refuses those tags; plain text escaped, so `<`, `>` and
    `&` typed by a person arrive as typed."""
    if fmt != "html":
        return html.escape(content, quote=False)
    out: list[str] = []
    for token in tokens(content, fmt):
        if token.kind == "text":
            out.append(html.escape(token.text, quote=False))
        elif token.tag == "br":
            out.append("\n" if token.kind == "start" else "")
        elif token.tag == "p":
            out.append(_paragraph_break(out))
        else:
            out.append(token.raw)
    return "".join(out).strip()


def _paragraph_break(out: list[str]) -> str:
    """Newlines that leave the text so far ending in one blank line (none at the start)."""
    written = "".join(out)
    if not written.strip():
        return ""
    return "\n" * max(0, 2 - (len(written) - len(written.rstrip("\n"))))


# The longest message each platform takes; longer content goes in parts.
PART_LENGTH = {"telegram": 4096, "whatsapp": 4096}


def message_parts(channel: str, content: str, fmt: str) -> list[str]:
    """The texts a message is sent as on its platform, one per part, rendered for it."""
    if channel == "telegram":
        html = fmt == "html"
        text = to_telegram_html(content, "html") if html else content
        return split_parts(text, PART_LENGTH[channel], markup=html)
    if channel == "whatsapp":
        return split_parts(to_whatsapp(content, fmt), PART_LENGTH[channel], markup=False)
    return [content]


def _href(start_tag: str) -> str:
    found = re.search(r"""href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", start_tag)
    return html.unescape(next(g for g in found.groups() if g is not None)) if found else ""


def split_parts(text: str, limit: int, *, markup: bool) -> list[str]:
    """Parts of at most `limit` visible characters, cut at the best boundary.

    With markup (Telegram HTML), tags open at a cut are closed at the end of the part
    and reopened at the start of the next, and characters are counted as shown.
    """
    parts: list[str] = []
    current: list[_Atom] = []
    stack_at_start: list[_Token] = []  # tags open where the current part begins
    for atom in _atoms(text, markup, limit):
        while current and _visible(current) + atom.length > limit:
            cut = _best_cut(current, limit)
            kept, carried = current[:cut], current[cut:]
            open_at_cut = _replay(stack_at_start, kept)
            closing = "".join(f"</{t.tag}>" for t in reversed(open_at_cut))
            parts.append("".join(a.raw for a in kept) + closing)
            stack_at_start = open_at_cut
            reopen = "".join(t.raw for t in open_at_cut)
            current = ([_Atom(reopen, 0, None)] if reopen else []) + carried
            if not _visible(current):
                break
        current.append(atom)
    if current:
        parts.append("".join(a.raw for a in current))
    return [part.strip() for part in parts if _has_text(part)]


def _visible(atoms: list["_Atom"]) -> int:
    return sum(atom.length for atom in atoms)


@dataclass(frozen=True)
class _Atom:
    raw: str
    length: int
    tag: _Token | None  # the tag, for markup atoms


def _atoms(text: str, markup: bool, limit: int) -> list[_Atom]:
    """Tags (no visible length) and pieces of text no longer than a word and its space."""
    found: list[_Atom] = []
    for token in tokens(text, "html" if markup else "text"):
        if token.kind != "text":
            if token.raw:
                found.append(_Atom(token.raw, 0, token))
            continue
        for piece in re.findall(r"\S+\s*|\s+", token.text):
            step = min(500, limit)  # a very long "word" is cut anyway
            for start in range(0, len(piece), step):
                chunk = piece[start : start + step]
                raw = html.escape(chunk, quote=False) if markup else chunk
                found.append(_Atom(raw, len(chunk), None))
    return found


def _best_cut(current: list[_Atom], limit: int) -> int:
    """Where to end the part: after a paragraph break, else a line break, else a space;
    a boundary that would leave the part less than half full is passed over for the next
    kind, and with no boundary at all the part is cut where it is full."""
    fallback = None
    for boundary in ("\n\n", "\n", " "):
        for index in range(len(current) - 1, 0, -1):
            before = current[index - 1]
            if before.length and before.raw.endswith(boundary):
                if _visible(current[:index]) >= limit // 2:
                    return index
                fallback = fallback or index
                break
    return fallback or len(current)


def _replay(stack: list[_Token], atoms: list[_Atom]) -> list[_Token]:
    """The tags open after `atoms`, starting from `stack`."""
    open_tags = list(stack)
    for atom in atoms:
        token = atom.tag
        if token is None:
            continue
        if token.kind == "start" and token.tag != "br":
            open_tags.append(token)
        elif token.kind == "end" and open_tags and open_tags[-1].tag == token.tag:
            open_tags.pop()
    return open_tags


def _has_text(part: str) -> bool:
    return bool(re.sub(r"<[^>]*>", "", part).strip())
