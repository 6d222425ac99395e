import pytest
from django.core.exceptions import ValidationError

from channels_app.content import validate_content


@pytest.mark.parametrize(
    "html", ["<b>bold</b> and <i>it</i>", '<a href="https://example.org">link</a>', "a<br>b",
             "<pre><code>x</code></pre>", "Fish &amp; chips"],
)  # fmt: skip
def test_it_accepts_telegram_html(html):
    validate_content("telegram", html, "html")


@pytest.mark.parametrize(
    ("html", "problem"),
    [("<div>x</div>", "<div> is not allowed"), ("<b>x", "<b> is never closed"),
     ("<b><i>x</b></i>", "</b> does not close"), ("<script>x</script>", "<script>")],
)  # fmt: skip
def test_it_refuses_html_telegram_cannot_parse_and_says_what(html, problem):
    with pytest.raises(ValidationError) as raised:
        validate_content("telegram", html, "html")
    assert problem in str(raised.value.message_dict["content"])


def test_it_refuses_a_message_over_the_channel_limit_and_names_the_limit():
    validate_content("telegram", "x" * 40960, "text")  # sent in ten parts
    with pytest.raises(ValidationError) as raised:
        validate_content("telegram", "x" * 40961, "text")
    assert "40961 characters; telegram allows 40960" in raised.value.message_dict["content"][0]


def test_an_sms_over_1600_characters_is_refused_counting_the_text_it_becomes():
    validate_content("sms", "<b>" + "x" * 1600 + "</b>", "html")
    with pytest.raises(ValidationError) as raised:
        validate_content("sms", "x" * 1601, "text")
    assert "1601 characters; sms allows 1600" in raised.value.message_dict["content"][0]


def test_html_tags_do_not_count_toward_the_limit():
    validate_content("telegram", "<b>" + "x" * 40960 + "</b>", "html")


def test_it_refuses_empty_content_and_unknown_formats():
    with pytest.raises(ValidationError):
        validate_content("telegram", "   ", "text")
    with pytest.raises(ValidationError) as raised:
        validate_content("telegram", "x", "markdown")
    assert "format" in raised.value.message_dict
