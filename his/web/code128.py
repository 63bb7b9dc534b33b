"""Code 128 (code set B) barcodes as SVG, for the printed prescription's code.

Pharmacy scanners read a linear barcode where a QR reader may be missing. Code set B covers
the printable ASCII characters of a prescription code; the patterns are those of ISO/IEC
15417 (element widths in modules, bar first; the stop symbol has seven elements).
"""

from __future__ import annotations

import base64

# fmt: off
PATTERNS = (
    "212222", "222122", "222221", "121223", "121322", "131222", "122213", "122312",
    "132212", "221213", "221312", "231212", "112232", "122132", "122231", "113222",
    "123122", "123221", "223211", "221132", "221231", "213212", "223112", "312131",
    "311222", "321122", "321221", "312212", "322112", "322211", "212123", "212321",
    "232121", "111323", "131123", "131321", "112313", "132113", "132311", "211313",
    "231113", "231311", "112133", "112331", "132131", "113123", "113321", "133121",
    "313121", "211331", "231131", "213113", "213311", "213131", "311123", "311321",
    "331121", "312113", "312311", "332111", "314111", "221411", "431111", "111224",
    "111422", "121124", "121421", "141122", "141221", "112214", "112412", "122114",
    "122411", "142112", "142211", "241211", "221114", "413111", "241112", "134111",
    "111242", "121142", "121241", "114212", "124112", "124211", "411212", "421112",
    "421211", "212141", "214121", "412121", "111143", "111341", "131141", "114113",
    "114311", "411113", "411311", "113141", "114131", "311141", "411131", "211412",
    "211214", "211232", "2331112",
)
# fmt: on
START_B = 104
STOP = 106
QUIET_MODULES = 10


def symbols(text: str) -> list[int]:
    """Start B, one value per character, the checksum (weighted sum modulo 103), stop."""
    values = [START_B]
    for ch in text:
        code = ord(ch)
        if not 32 <= code <= 126:
            raise ValueError(f"Code 128 B cannot encode {ch!r}")
        values.append(code - 32)
    checksum = (START_B + sum(v * i for i, v in enumerate(values[1:], start=1))) % 103
    return [*values, checksum, STOP]


def widths(text: str) -> list[int]:
    """Element widths in modules, bar first, bars and spaces alternating."""
    return [int(w) for value in symbols(text) for w in PATTERNS[value]]


def svg(text: str, *, height: int = 40) -> str:
    x = QUIET_MODULES
    bars = []
    for i, width in enumerate(widths(text)):
        if i % 2 == 0:
            bars.append(f'<rect x="{x}" y="0" width="{width}" height="{height}"/>')
        x += width
    total = x + QUIET_MODULES
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {total} {height}" '
        f'preserveAspectRatio="none" shape-rendering="crispEdges">'
        f'<rect width="{total}" height="{height}" fill="#fff"/>'
        f'<g fill="#000">{"".join(bars)}</g></svg>'
    )


def data_uri(text: str) -> str:
    """An ``<img>`` source the CSP allows (img-src data:)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg(text).encode()).decode()
