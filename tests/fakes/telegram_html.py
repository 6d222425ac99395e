"""What Telegram's HTML parse mode refuses, with the descriptions Telegram answers.

Written from the Bot API's "HTML style" rules and Telegram's own error texts, apart from
the project's content checks, so that a check we get wrong fails a test instead of
agreeing with itself. Telegram counts a message's length after its entities are parsed.
"""

from html.parser import HTMLParser

TAGS = {
    *("b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler"),
    *("a", "code", "pre", "blockquote", "tg-emoji"),
}
MAX_LENGTH = 4096


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.problem: str | None = None
        self.length = 0

    def _refuse(self, text: str) -> None:
        if self.problem is None:
            self.problem = f"Bad Request: can't parse entities: {text}"

    def handle_starttag(self, tag, attrs) -> None:
        if tag not in TAGS:
            self._refuse(f'Unsupported start tag "{tag}" at byte offset {self.getpos()[1]}')
        elif tag == "span" and dict(attrs).get("class") != "tg-spoiler":
            self._refuse('Tag "span" must have class "tg-spoiler"')
        else:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs) -> None:
        self._refuse(f'Unsupported start tag "{tag}" at byte offset {self.getpos()[1]}')

    def handle_endtag(self, tag) -> None:
        if not self.open or self.open[-1] != tag:
            expected = self.open[-1] if self.open else ""
            offset = self.getpos()[1]
            self._refuse(
                f'Unmatched end tag at byte offset {offset}, expected "</{expected}>", '
                f'found "</{tag}>"'
            )
        else:
            self.open.pop()

    def handle_data(self, data) -> None:
        self.length += len(data)


def refusal(text: str, parse_mode: str | None) -> str | None:
    """Telegram's description of why it refuses this text, or None when it takes it."""
    if parse_mode and parse_mode.upper() == "HTML":
        parser = _Parser()
        parser.feed(text)
        parser.close()
        if parser.open and parser.problem is None:
            parser._refuse(f'Can\'t find end tag corresponding to start tag "{parser.open[-1]}"')
        if parser.problem:
            return parser.problem
        length = parser.length
    else:
        length = len(text)
    if not text.strip() or length == 0:
        return "Bad Request: message text is empty"
    if length > MAX_LENGTH:
        return "Bad Request: message is too long"
    return None
