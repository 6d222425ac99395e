"""What the patient's web inbox page may show of a message."""

import nh3

from channels_app.content import WRITABLE_TAGS


def safe_html(body: str, fmt: str) -> str:
    """What the inbox page may show as HTML: the Telegram tags, links only to http(s)."""
    if fmt != "html":
        return nh3.clean_text(body).replace("\n", "<br>")
    return nh3.clean(body, tags=set(WRITABLE_TAGS), attributes={"a": {"href"}},
                     url_schemes={"http", "https", "mailto", "tel"})  # fmt: skip
