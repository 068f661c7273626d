"""Microsoft's RSS verification suite, shared by the hash-engine and multiqueue tests.

"Verifying the RSS Hash Calculation"
(https://learn.microsoft.com/windows-hardware/drivers/network/verifying-the-rss-hash-calculation),
the same table as the Intel 82599 datasheet §7.1.2.8.3 "RSS Verification Suite"; the
numbers were read from DPDK's copy, app/test/test_thash.c (``v4_tbl``/``v6_tbl``). Each
row: source address and port, destination address and port, the hash over the addresses
only and over addresses and ports, under the 40-byte key :data:`MS_KEY`.

:func:`ref_toeplitz` is a bit-by-bit transcription of Microsoft's pseudo code ("RSS
Hashing Functions") that shares nothing with the table-driven engine in
emulator/net/rss.py; tests use it only where no published value exists.
"""

from __future__ import annotations

import ipaddress

Row = tuple[str, int, str, int, int, int]

MS_KEY = bytes.fromhex(
    "6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa"
)
V4_ROWS: list[Row] = [
    ("66.9.149.187", 2794, "161.142.100.80", 1766, 0x323E8FC2, 0x51CCC178),
    ("199.92.111.2", 14230, "65.69.140.83", 4739, 0xD718262A, 0xC626B0EA),
    ("24.19.198.95", 12898, "12.22.207.184", 38024, 0xD2D0A5DE, 0x5C2B394A),
    ("38.27.205.30", 48228, "209.142.163.6", 2217, 0x82989176, 0xAFC7327F),
    ("153.39.163.191", 44251, "202.188.127.2", 1303, 0x5D1809C5, 0x10E828A2),
]
V6_ROWS: list[Row] = [
    ("3ffe:2501:200:1fff::7", 2794, "3ffe:2501:200:3::1", 1766, 0x2CC18CD5, 0x40207D3D),
    ("3ffe:501:8::260:97ff:fe40:efab", 14230, "ff02::1", 4739, 0x0F0C461C, 0xDDE51BBF),
    ("3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251, "fe80::200:f8ff:fe21:67cf", 38024,
     0x4B61E985, 0x02D1FEEF),
]


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def ref_toeplitz(key: bytes, data: bytes) -> int:
    """Microsoft "RSS Hashing Functions", transcribed: for each bit of the input, left to
    right, if it is set XOR the leftmost 32 bits of K into the result; shift K left."""
    k = int.from_bytes(key, "big")
    nbits = len(key) * 8
    result = 0
    for i in range(len(data) * 8):
        if data[i // 8] & (0x80 >> (i % 8)):
            result ^= (k >> (nbits - 32 - i)) & 0xFFFFFFFF
    return result
