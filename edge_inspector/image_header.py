"""Image dimensions from the file header, read before anything is decoded.

A 60-byte PNG can claim to be 100000 x 100000 pixels: decoding it would ask for 30 GB and
OpenCV aborts with an assertion.  ``inspect`` reads the declared size from the header first
(PNG ``IHDR``, JPEG ``SOFn``, BMP ``BITMAPINFOHEADER``) and refuses images beyond
:data:`MAX_IMAGE_PIXELS` with a message naming the file, then goes on with the next one.
"""

from __future__ import annotations

MAX_IMAGE_PIXELS = 100_000_000  # 100 megapixels: 300 MB as BGR, far beyond any line camera
MAX_IMAGE_SIDE = 65_535

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def declared_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` as the header declares it, or None when the header says nothing."""
    if data.startswith(_PNG_MAGIC) and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith(b"BM") and len(data) >= 26:
        header_size = int.from_bytes(data[14:18], "little")
        if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
            return int.from_bytes(data[18:20], "little"), int.from_bytes(data[20:22], "little")
        width = int.from_bytes(data[18:22], "little", signed=True)
        height = int.from_bytes(data[22:26], "little", signed=True)
        return abs(width), abs(height)  # negative height: a top-down bitmap
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG markers up to the first start-of-frame."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _JPEG_SOF and i + 9 <= len(data):
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        if length < 2:
            return None
        i += 2 + length
    return None


def size_problem(data: bytes) -> str | None:
    """Why the declared dimensions cannot be decoded safely, or None."""
    size = declared_size(data)
    if size is None:
        return None
    width, height = size
    if width == 0 or height == 0:
        return f"the header declares an empty image ({width}x{height})"
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        return (f"the header declares {width}x{height} pixels, beyond the limit of "
                f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels ({MAX_IMAGE_SIDE} per side); not decoded")
    return None
