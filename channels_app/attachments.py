"""Photos, voice notes and documents: what each platform takes, checked when a message is
written, and the attachment as data an adapter sends.

The type is read from the file's bytes (filetype's signatures), never from the name or
the type the browser claims; an image must also open and verify with Pillow, so a
truncated or corrupt one is refused at creation instead of failing at the provider.

Limits, from the providers' documentation (the README's *Attachments* has them as a
table): Telegram photos 10 MB (width + height at most 10,000, sides at most 20:1), other
files 50 MB (a bot's upload limit), captions 1,024 characters; WhatsApp images 5 MB
(JPEG, PNG), audio 16 MB (AAC, AMR, MP3, M4A, OGG/Opus; shown without a caption),
documents 100 MB, captions 1,024; Twilio MMS 5 MB, US and Canadian numbers only.
E-mail's 10 MB is our own cap: providers refuse messages of 10 to 25 MB in all, and base64
makes an attachment a third larger on the wire. The web inbox takes the same, since a
patient opens it on a phone.
"""

import io
from collections.abc import Callable
from dataclasses import dataclass

import filetype
from django.core.exceptions import ValidationError
from PIL import Image, UnidentifiedImageError

MB = 1024 * 1024

PHOTO, VOICE, DOCUMENT = "photo", "voice", "document"
KINDS = (PHOTO, VOICE, DOCUMENT)

JPEG, PNG, GIF, WEBP = "image/jpeg", "image/png", "image/gif", "image/webp"
OGG, MP3, M4A, AAC, AMR = "audio/ogg", "audio/mpeg", "audio/mp4", "audio/aac", "audio/amr"
PDF = "application/pdf"

# filetype names some types differently from what providers list.
_ALIASES = {"audio/x-m4a": M4A, "video/mp4": M4A, "audio/x-aac": AAC, "audio/opus": OGG}
# The extension a file of each type is sent under (the patient's file name never leaves).
EXTENSIONS = {
    JPEG: "jpg",
    PNG: "png",
    GIF: "gif",
    WEBP: "webp",
    OGG: "ogg",
    MP3: "mp3",
    M4A: "m4a",
    AAC: "aac",
    AMR: "amr",
    PDF: "pdf",
}


@dataclass(frozen=True)
class MediaLimit:
    max_bytes: int
    types: frozenset[str]


def _limits(photo, voice, document) -> dict[str, MediaLimit]:
    return {PHOTO: MediaLimit(*photo), VOICE: MediaLimit(*voice), DOCUMENT: MediaLimit(*document)}


AUDIO = frozenset({OGG, MP3, M4A, AAC, AMR})
LIMITS: dict[str, dict[str, MediaLimit]] = {
    "telegram": _limits(
        (10 * MB, frozenset({JPEG, PNG, WEBP})),
        (50 * MB, frozenset({OGG, MP3, M4A})),
        (50 * MB, frozenset({PDF})),
    ),
    "whatsapp": _limits(
        (5 * MB, frozenset({JPEG, PNG})), (16 * MB, AUDIO), (100 * MB, frozenset({PDF}))
    ),
    "sms": _limits(
        (5 * MB, frozenset({JPEG, PNG, GIF})),
        (5 * MB, frozenset({MP3, M4A, OGG, AMR})),
        (5 * MB, frozenset({PDF})),
    ),
    "email": _limits(
        (10 * MB, frozenset({JPEG, PNG, GIF, WEBP})), (10 * MB, AUDIO), (10 * MB, frozenset({PDF}))
    ),
    "web": _limits(
        (10 * MB, frozenset({JPEG, PNG, GIF, WEBP})), (10 * MB, AUDIO), (10 * MB, frozenset({PDF}))
    ),
}
# The longest text that goes with the media as its caption; a longer text is sent as
# message(s) of its own right after it. None: the platform shows no caption for that kind.
CAPTION_LENGTH: dict[str, dict[str, int | None]] = {
    "telegram": {PHOTO: 1024, VOICE: 1024, DOCUMENT: 1024},
    "whatsapp": {PHOTO: 1024, VOICE: None, DOCUMENT: 1024},
}
# Telegram's rules for a photo's dimensions (sendPhoto).
TELEGRAM_PHOTO_SIDES_MAX = 10_000
TELEGRAM_PHOTO_RATIO_MAX = 20


@dataclass(frozen=True)
class Attachment:
    """A file that goes with a message, as an adapter needs it. `read` returns its bytes
    (decrypted); `url` is a signed, expiring address of it on this site, for providers
    that fetch media themselves (Twilio), empty when the site has no public address."""

    kind: str
    content_type: str
    size: int
    read: Callable[[], bytes]
    url: str = ""

    @property
    def filename(self) -> str:
        """The name it is sent under: its kind and type, never the name it was uploaded as
        (a file name can say more about a patient than its content)."""
        return f"{self.kind}.{EXTENSIONS.get(self.content_type, 'bin')}"


@dataclass(frozen=True)
class CheckedFile:
    kind: str
    content_type: str
    size: int


def sniff_type(data: bytes) -> str:
    """The MIME type the bytes say they are ("" when unknown)."""
    guess = filetype.guess_mime(data[:8192])
    return _ALIASES.get(guess or "", guess or "")


def kind_for(content_type: str) -> str:
    if content_type.startswith("image/"):
        return PHOTO
    if content_type.startswith("audio/"):
        return VOICE
    return DOCUMENT


def check_attachment(channel: str, data: bytes, kind: str = "") -> CheckedFile:
    """The file's kind, type and size if `channel` takes it; else a ValidationError on
    `attachment` that names the limit."""
    content_type = sniff_type(data)
    kind = kind or kind_for(content_type)
    if kind not in KINDS:
        raise ValidationError(
            {"attachment": f"{kind!r} is not a kind; use photo, voice or document."}
        )
    limits = LIMITS.get(channel)
    if limits is None:
        raise ValidationError({"attachment": f"{channel} takes no attachments."})
    limit = limits[kind]
    if content_type not in limit.types:
        found = f"a {content_type} file" if content_type else "a file of unknown type"
        allowed = ", ".join(sorted(limit.types))
        raise ValidationError(
            {"attachment": f"This is {found}; a {kind} on {channel} must be one of: {allowed}."}
        )
    if len(data) > limit.max_bytes:
        raise ValidationError(
            {
                "attachment": (
                    f"The file has {_megabytes(len(data))}; a {kind} on {channel} may have at most "
                    f"{_megabytes(limit.max_bytes)}."
                )
            }
        )
    if content_type.startswith("image/"):
        _check_image(channel, data)
    return CheckedFile(kind, content_type, len(data))


def _check_image(channel: str, data: bytes) -> None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # verify() reads no pixels; a cut-off file fails only here
            width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise ValidationError(
            {"attachment": "The image is corrupt or cut off; it cannot be opened."}
        ) from None
    if channel == "telegram":
        ratio = max(width, height) / max(1, min(width, height))
        if width + height > TELEGRAM_PHOTO_SIDES_MAX or ratio > TELEGRAM_PHOTO_RATIO_MAX:
            raise ValidationError(
                {
                    "attachment": (
                        f"The photo is {width}x{height}; Telegram takes width + height up "
                        f"to {TELEGRAM_PHOTO_SIDES_MAX} and sides up to "
                        f"{TELEGRAM_PHOTO_RATIO_MAX}:1."
                    )
                }
            )


def _megabytes(size: int) -> str:
    return f"{size / MB:.1f} MB" if size % MB else f"{size // MB} MB"


def caption_length(channel: str, kind: str) -> int | None:
    return CAPTION_LENGTH.get(channel, {}).get(kind)
