"""The GSM 03.38 alphabet, shared by what writes SMS (notify fits a text into
segments) and what submits them (the gateway picks the coding)."""

# GSM 03.38 default alphabet (3GPP TS 23.038, 6.2.1). ESC (0x1B) is left out on
# purpose: a literal ESC in a text is not a character a phone can show.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e"
    "ÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each of these is sent as ESC + code, i.e. two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7_ALL = GSM7_BASIC | GSM7_EXTENSION


def is_gsm7(text: str) -> bool:
    """Whether `text` can go in the 7-bit alphabet (else the SMS must be UCS-2)."""
    return all(ch in GSM7_ALL for ch in text)
