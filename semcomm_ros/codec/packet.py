"""Packet framing of the semantic video codec: header, checksum, accounting.

Layout of one packet (one frame), all fields byte aligned::

    byte 0      magic (high nibble, 0xA) | version (2 bits) | frame type (2 bits: 0 = I, 1 = P)
    P-frames:
    byte 1      frame index modulo 16 (high nibble) | check nibble (low nibble of the CRC-8 of
                the packet with this nibble zeroed)
    ...         range-coded payload
    I-frames:
    byte 1      frame index modulo 256
    byte 2      profile (2 bits) | size code (2 bits) | Q code (4 bits)
    byte 3      xi in quarter pixels (0 .. 63.75 px)
    byte 4      I-frame period P (1 .. 255)
    [3 bytes]   width-1, height-1 (12 bits each)      when size code == 3
    [2 bytes]   Q (uint16, big endian)                when Q code == 15
    ...         range-coded payload (constriction), trailing bytes trimmed (see entropy.py)
    last byte   CRC-8 of everything before it

P-frames carry no size/parameters: they cannot be decoded without the I-frame they extend, which
carries both. At 10 fps one byte a frame costs 0.08 kbps, 16 % of the tracked profile's budget,
hence the bit-packed fields and a P-frame header of two bytes: its 4-bit index detects any gap of
1..7 frames (8..15 behind reads as out of order), and its 4-bit check catches 15 of 16 corrupt
P-frames (the transport below, DDS/UDP, checksums too); I-frames, the resynchronisation points,
carry the full 8-bit index and a CRC-8.
"""

from __future__ import annotations

from dataclasses import dataclass

from semcomm_ros.codec.errors import BitstreamError

MAGIC = 0xA
VERSION = 1
FRAME_I = 0
FRAME_P = 1
FRAME_TYPE_NAMES = {FRAME_I: "I", FRAME_P: "P"}

PROFILES = ("paper", "tracked")

# size code -> (height, width); code 3 = explicit
_SIZE_CODES = {0: (512, 512), 1: (256, 512), 2: (256, 256)}
_SIZE_LOOKUP = {v: k for k, v in _SIZE_CODES.items()}

MAX_SIDE = 4096
MAX_Q = 65535


class FrameLostError(BitstreamError):
    """A frame is missing (gap in the frame index) or no I-frame was seen yet.

    The decoder drops its reference state: every P-frame raises this until the next I-frame,
    which decodes normally and resumes the stream exactly there.
    """


def _crc8_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return table


_CRC8 = _crc8_table()


def crc8(data: bytes) -> int:
    """CRC-8/ATM (polynomial 0x07): catches all 1-2 bit errors and 255/256 of random damage.

    Shared by the semantic and the low-res packets."""
    crc = 0
    for b in data:
        crc = _CRC8[crc ^ b]
    return crc


@dataclass(frozen=True)
class FrameHeader:
    """What a packet says about itself, readable without decoding the payload."""

    frame_index: int  # modulo 256 (I-frames) or 16 (P-frames)
    frame_type: int  # FRAME_I or FRAME_P
    version: int = VERSION
    profile: str | None = None  # I-frames only
    height: int | None = None
    width: int | None = None
    q_symbols: int | None = None
    xi: float | None = None
    period: int | None = None
    header_bytes: int = 2  # bytes before the payload
    packet_bytes: int = 0

    @property
    def is_iframe(self) -> bool:
        return self.frame_type == FRAME_I

    @property
    def frame_type_name(self) -> str:
        return FRAME_TYPE_NAMES[self.frame_type]

    @property
    def bits(self) -> int:
        return 8 * self.packet_bytes


def _q_code(q: int) -> int:
    if q >= 2 and q & (q - 1) == 0 and q.bit_length() - 2 < 15:
        return q.bit_length() - 2  # Q = 2 ** (code + 1)
    return 15


def pack(
    frame_type: int,
    frame_index: int,
    payload: bytes,
    *,
    profile: str = "paper",
    height: int = 0,
    width: int = 0,
    q_symbols: int = 256,
    xi: float = 0.0,
    period: int = 1,
) -> bytes:
    if frame_type == FRAME_P:
        out = bytearray([(MAGIC << 4) | (VERSION << 2) | frame_type, (frame_index & 0xF) << 4]) + payload
        out[1] |= crc8(bytes(out)) & 0xF
        return bytes(out)
    out = bytearray([(MAGIC << 4) | (VERSION << 2) | frame_type, frame_index & 0xFF])
    if frame_type == FRAME_I:
        size_code = _SIZE_LOOKUP.get((height, width), 3)
        q_code = _q_code(q_symbols)
        out.append((PROFILES.index(profile) << 6) | (size_code << 4) | q_code)
        out.append(min(255, max(0, int(round(xi * 4)))))
        out.append(min(255, max(1, int(period))))
        if size_code == 3:
            v = ((width - 1) << 12) | (height - 1)
            out += v.to_bytes(3, "big")
        if q_code == 15:
            out += int(q_symbols).to_bytes(2, "big")
    out += payload
    out.append(crc8(bytes(out)))
    return bytes(out)


def parse_header(packet: bytes) -> FrameHeader:
    """Read frame index, frame type and parameters of a packet without decoding it.

    Checks magic, version, checksum and field ranges; raises BitstreamError otherwise.
    """
    if not isinstance(packet, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"packet must be bytes, got {type(packet).__name__}")
    data = bytes(packet)
    if len(data) < 2:
        raise BitstreamError(f"truncated packet: {len(data)} bytes, a packet has at least 2")
    b0 = data[0]
    if b0 >> 4 != MAGIC:
        raise BitstreamError(f"foreign packet: magic nibble 0x{b0 >> 4:X}, expected 0x{MAGIC:X}")
    version = (b0 >> 2) & 3
    if version != VERSION:
        raise BitstreamError(f"unsupported bitstream version {version} (this decoder reads {VERSION})")
    ftype = b0 & 3
    if ftype not in FRAME_TYPE_NAMES:
        raise BitstreamError(f"unknown frame type {ftype}")
    if ftype == FRAME_P:
        check = crc8(bytes([data[0], data[1] & 0xF0]) + data[2:]) & 0xF
        if check != data[1] & 0xF:
            raise BitstreamError(
                f"P-frame check nibble mismatch (0x{check:X} != 0x{data[1] & 0xF:X}): corrupt or truncated packet"
            )
        return FrameHeader(data[1] >> 4, ftype, version, header_bytes=2, packet_bytes=len(data))
    if crc8(data[:-1]) != data[-1]:
        raise BitstreamError(
            f"checksum mismatch (CRC-8 0x{crc8(data[:-1]):02X} != 0x{data[-1]:02X}): corrupt or truncated packet"
        )
    index = data[1]
    if len(data) < 6:
        raise BitstreamError(f"truncated I-frame: {len(data)} bytes, the I-frame header alone needs 6")
    b2 = data[2]
    prof = b2 >> 6
    if prof >= len(PROFILES):
        raise BitstreamError(f"unknown profile code {prof}")
    size_code, q_code = (b2 >> 4) & 3, b2 & 15
    xi = data[3] / 4.0
    period = data[4]
    if period == 0:
        raise BitstreamError("I-frame period 0 in header")
    pos = 5
    if size_code == 3:
        if len(data) < pos + 3 + 1:
            raise BitstreamError("truncated I-frame: explicit frame size missing")
        v = int.from_bytes(data[pos : pos + 3], "big")
        width, height = (v >> 12) + 1, (v & 0xFFF) + 1
        pos += 3
    else:
        height, width = _SIZE_CODES[size_code]
    if q_code == 15:
        if len(data) < pos + 2 + 1:
            raise BitstreamError("truncated I-frame: explicit Q missing")
        q = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if q < 2:
            raise BitstreamError(f"Q = {q} in header; Q must be >= 2")
    else:
        q = 2 ** (q_code + 1)
    return FrameHeader(
        index, ftype, version, PROFILES[prof], height, width, q, xi, period, header_bytes=pos, packet_bytes=len(data)
    )


def payload_of(packet: bytes, header: FrameHeader) -> bytes:
    if header.is_iframe:
        return bytes(packet[header.header_bytes : -1])
    return bytes(packet[header.header_bytes :])


# --- accounting (paper Sec. V-B: kbps = bits/s / 1024, bpp = kbps * 1024 / (H * W * fps)) ---------


def frame_bits(packet: bytes) -> int:
    """Exact cost of one frame on the link: every byte of the packet, header and checksum included."""
    return 8 * len(packet)


def kbps(total_bits: float, frames: int, fps: float = 10.0) -> float:
    """Average rate of ``frames`` frames carrying ``total_bits`` at ``fps``, in kbit/s (1 kbit = 1024 bit)."""
    if frames <= 0:
        raise ValueError("frames must be > 0")
    return total_bits / frames * fps / 1024.0


def bpp(rate_kbps: float, height: int, width: int, fps: float = 10.0) -> float:
    """Bits per pixel as the paper computes it: kbps * 1024 / (H * W * fps)."""
    return rate_kbps * 1024.0 / (height * width * fps)
