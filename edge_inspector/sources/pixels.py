"""GenICam pixel formats as the BGR images every model input starts from.

A machine-vision camera sends what its ``PixelFormat`` says: 8-bit mono, 10 to 16-bit mono in
16-bit words, a raw Bayer mosaic, packed RGB or YUV 4:2:2.  Each buffer names its format by
its PFNC code (the GenICam Pixel Format Naming Convention), so conversion goes by that code,
whatever the camera was asked for.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_inspector.errors import UserError

_G, _BG, _GB, _GR, _RG = cv2.COLOR_GRAY2BGR, cv2.COLOR_BayerBG2BGR, cv2.COLOR_BayerGB2BGR, cv2.COLOR_BayerGR2BGR, cv2.COLOR_BayerRG2BGR
#: GenICam PFNC code (what a buffer says it holds) -> (significant bits per sample, samples per pixel,
#: OpenCV conversion of the 8-bit samples to BGR).  OpenCV names a Bayer pattern by its second row
#: and column, so GenICam's BayerRG (RGGB) is OpenCV's BayerBG.
PIXEL_FORMATS: dict[int, tuple[int, int, int | None]] = {
    0x01080001: (8, 1, _G), 0x01100003: (10, 1, _G), 0x01100005: (12, 1, _G),  # Mono8, Mono10, Mono12
    0x01100025: (14, 1, _G), 0x01100007: (16, 1, _G),  # Mono14, Mono16
    0x01080009: (8, 1, _BG), 0x01080008: (8, 1, _GB), 0x0108000A: (8, 1, _GR), 0x0108000B: (8, 1, _RG),  # Bayer*8
    0x0110000D: (10, 1, _BG), 0x0110000C: (10, 1, _GB), 0x0110000E: (10, 1, _GR), 0x0110000F: (10, 1, _RG),
    0x01100011: (12, 1, _BG), 0x01100010: (12, 1, _GB), 0x01100012: (12, 1, _GR), 0x01100013: (12, 1, _RG),
    0x0110002F: (16, 1, _BG), 0x0110002E: (16, 1, _GB), 0x01100030: (16, 1, _GR), 0x01100031: (16, 1, _RG),
    0x02180014: (8, 3, cv2.COLOR_RGB2BGR), 0x02180015: (8, 3, None),  # RGB8, BGR8
    0x0210001F: (8, 2, cv2.COLOR_YUV2BGR_UYVY), 0x02100032: (8, 2, cv2.COLOR_YUV2BGR_YUYV),  # YUV422_8_UYVY, YUV422_8
}
SUPPORTED_FORMATS = "Mono8/10/12/14/16, Bayer{RG,GR,GB,BG}{8,10,12,16}, RGB8, BGR8, YUV422_8_UYVY, YUV422_8"


def to_bgr(data: bytes, width: int, height: int, code: int, x_padding: int = 0) -> np.ndarray:
    """A camera buffer as an H x W x 3 BGR uint8 image (the layout every model input starts from).

    Samples wider than 8 bits (unpacked, little-endian) keep their 8 most significant bits.
    """
    if code not in PIXEL_FORMATS:
        raise UserError(f"pixel format 0x{code:08x} cannot be converted; use one of: {SUPPORTED_FORMATS}")
    bits, channels, conversion = PIXEL_FORMATS[code]
    sample_bytes = 2 if bits > 8 else 1
    row_bytes = width * channels * sample_bytes
    rows = np.frombuffer(data, np.uint8, count=(row_bytes + x_padding) * height).reshape(height, -1)[:, :row_bytes]
    if sample_bytes == 2:
        samples = (np.ascontiguousarray(rows).view("<u2") >> (bits - 8)).astype(np.uint8)
    else:
        samples = rows
    image = samples.reshape((height, width) if channels == 1 else (height, width, channels))
    return np.ascontiguousarray(image) if conversion is None else cv2.cvtColor(image, conversion)
