import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from channels_app.content import safe_html, validate_content
from channels_app.formatting import split_parts, to_telegram_html
from channels_app.telegram import MAX_MESSAGE_LENGTH
from tests.fakes.telegram_html import refusal


@pytest.mark.parametrize(
    "html",
    ["<b>bold</b> and <i>it</i>", '<a href="https://example.org">link</a>', "a<br>b",
     "a<br/>b", "<p>one</p><p>two</p>", '<span class="tg-spoiler">x</span>',
     "<pre><code>x</code></pre>", "Fish &amp; chips"],
)  # fmt: skip
def test_it_accepts_telegram_html(html):
    validate_content("telegram", html, "html")


@pytest.mark.parametrize(
    ("html", "problem"),
    [("<div>x</div>", "<div> is not allowed"), ("<b>x", "<b> is never closed"),
     ("<b><i>x</b></i>", "</b> does not close"), ("<script>x</script>", "<script>"),
     ("<span>x</span>", 'class="tg-spoiler"'), ("<b/>", "<b/> is not allowed")],
)  # fmt: skip
def test_it_refuses_html_telegram_cannot_parse_and_says_what(html, problem):
    with pytest.raises(ValidationError) as raised:
        validate_content("telegram", html, "html")
    assert problem in str(raised.value.message_dict["content"])


def test_it_refuses_a_message_over_the_channel_limit_and_names_the_limit():
    validate_content("telegram", "x " * 20000, "text")  # sent in ten parts
    with pytest.raises(ValidationError) as raised:
        validate_content("telegram", "x " * 20480 + "y", "text")
    assert "40961 characters; telegram allows 40960" in raised.value.message_dict["content"][0]


def test_a_message_that_would_go_in_more_than_ten_parts_is_refused_naming_the_count():
    paragraph = "word " * 500  # 2,500 characters: two do not fit one part
    validate_content("telegram", "\n\n".join([paragraph] * 10), "text")
    with pytest.raises(ValidationError) as raised:
        validate_content("telegram", "\n\n".join([paragraph] * 11), "text")
    assert "11 parts on telegram; at most 10" in raised.value.message_dict["content"][0]


def test_an_sms_over_1600_characters_is_refused_counting_the_text_it_becomes():
    validate_content("sms", "<b>" + "x" * 1600 + "</b>", "html")
    with pytest.raises(ValidationError) as raised:
        validate_content("sms", "x" * 1601, "text")
    assert "1601 characters; sms allows 1600" in raised.value.message_dict["content"][0]


def test_html_tags_do_not_count_toward_the_limit():
    # 45,000 characters written, 15,000 shown: within 40,960 only if tags do not count.
    validate_content("telegram", "<b>xy</b> " * 5000, "html")


def test_it_refuses_empty_content_and_unknown_formats():
    with pytest.raises(ValidationError):
        validate_content("telegram", "   ", "text")
    with pytest.raises(ValidationError) as raised:
        validate_content("telegram", "x", "markdown")
    assert "format" in raised.value.message_dict


# Markup as people write it: tags we accept or not, well nested or not, with text between.
_TAG = st.sampled_from(["b", "i", "u", "s", "a", "code", "pre", "blockquote", "br", "p", "div",
                        "span", "tg-spoiler", "h1", "em"])  # fmt: skip
_PIECE = st.one_of(
    st.text(alphabet="ab &<>\n", min_size=1, max_size=6),
    _TAG.map(lambda tag: f"<{tag}>"),
    _TAG.map(lambda tag: f"</{tag}>"),
    _TAG.map(lambda tag: f"<{tag}/>"),
    st.just('<span class="tg-spoiler">'),
    st.just('<a href="https://example.org/?a=1&amp;b=2">'),
)


@given(st.lists(_PIECE, min_size=1, max_size=30).map("".join))
def test_whatever_is_accepted_at_creation_telegram_accepts_when_sent(content):
    try:
        validate_content("telegram", content, "html")
    except ValidationError:
        return  # refused with a reason when written: never a failed delivery
    sent = to_telegram_html(content, "html")
    for part in split_parts(sent, MAX_MESSAGE_LENGTH, markup=True):
        assert refusal(part, "HTML") is None, (content, part)


# -- Attributes (docs/security.md, item 17) ---------------------------------------------


@pytest.mark.parametrize(
    "html",
    [
        '<a href="http://example.org">x</a>',
        '<a href="mailto:care@example.org">x</a>',
        '<a href="tel:+4915112345678">x</a>',
        '<a href=" HTTPS://example.org ">x</a>',
        '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>',
    ],
)
def test_it_accepts_the_attributes_telegram_documents(html):
    validate_content("telegram", html, "html")


@pytest.mark.parametrize(
    ("html", "problem"),
    [
        (
            '<a href="javascript:alert(1)">x</a>',
            "href must start with http://, https://, mailto: or tel:",
        ),
        ('<a href="JaVaScRiPt:alert(1)">x</a>', "href must start with"),
        ('<a href="java\tscript:alert(1)">x</a>', "href must start with"),
        ('<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>', "href must start with"),
        ('<a href="/relative">x</a>', "href must start with"),
        ("<a href>x</a>", "href must start with"),
        ('<a href="https://x.org" onclick="steal()">x</a>', "onclick is not allowed on <a>"),
        ('<b style="color:red">x</b>', "style is not allowed on <b>"),
        ('<span class="x">x</span>', 'class="tg-spoiler"'),
        ('<span class="tg-spoiler" id="s">x</span>', "id is not allowed on <span>"),
        ('<tg-emoji emoji-id="1 onload">x</tg-emoji>', "emoji-id must be a number"),
        ("<img src=x onerror=alert(1)>", "<img> is not allowed"),
    ],
)
def test_it_refuses_attributes_outside_the_allow_list_and_says_which(html, problem):
    with pytest.raises(ValidationError) as raised:
        validate_content("telegram", html, "html")
    assert problem in str(raised.value.message_dict["content"])


NO_LINK = '<a rel="noopener noreferrer">go</a>'


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ('<a href="javascript:alert(1)">go</a>', NO_LINK),
        ('<a href="data:text/html,x">go</a>', NO_LINK),
        ('<a href="/admin/">go</a>', NO_LINK),
        (
            '<a href="https://x.org" onclick="steal()">go</a>',
            '<a href="https://x.org" rel="noopener noreferrer">go</a>',
        ),
        (
            '<span class="x">a</span><span class="tg-spoiler">b</span>',
            '<span>a</span><span class="tg-spoiler">b</span>',
        ),
        ('<img src=x onerror="alert(1)">after', "after"),
        ('<b style="x" title="t" lang="en">bold</b>', "<b>bold</b>"),
        ("<script>alert(1)</script>text", "text"),
        ("line<br>two", "line<br>two"),
    ],
)
def test_the_sanitiser_keeps_only_the_allowed_tags_attributes_and_schemes(stored, shown):
    assert safe_html(stored, "html") == shown


def test_plain_text_is_escaped_with_its_line_breaks():
    assert safe_html('<b>1 < "2"</b>\nnext', "text") == (
        "&lt;b&gt;1 &lt; &quot;2&quot;&lt;/b&gt;<br>next"
    )
