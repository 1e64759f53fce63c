"""Packet framing of the semantic video codec: header, checksum, accounting.

Layout of one packet (one frame), bitstream version 3, all fields byte aligned::

    I-frames:
    byte 0      magic (high nibble, 0xA = 1010b) | version (2 bits) | frame type (2 bits, 0 = I)
    byte 1      frame index modulo 256
    byte 2      profile (2 bits) | size code (2 bits) | Q code (4 bits)
    byte 3      xi in quarter pixels (0 .. 63.75 px)
    byte 4      I-frame period P (1 .. 255)
    [3 bytes]   width-1, height-1 (12 bits each)      when size code == 3
    [2 bytes]   Q (uint16, big endian)                when Q code == 15
    ...         range-coded payload (constriction), trailing bytes trimmed (see entropy.py)
    last byte   CRC-8 of everything before it
    P-frames predicted from the previous frame (short form):
    byte 0      marker 11b (2 bits) | frame index modulo 16 (4 bits) | check (2 bits: the low two
                bits of the CRC-8 of the packet with these two bits zeroed)
    ...         range-coded payload (may be empty: every instance kept)
    P-frames predicted from an older frame (reference picture selection, long form):
    byte 0      marker 0b (1 bit) | frame index modulo 16 (4 bits) | check (3 bits: the low three
                bits of the CRC-8 of the packet with these three bits zeroed)
    byte 1      frame index bits 4..7 (4 bits) | reference distance d (4 bits, 2 .. 15: the frame
                this one is predicted from is frame index - d)
    ...         range-coded payload

Redundancy bundle (version 3: packets repeated on a lossy link, RFC 2198-style, see ``bundle``).
One copy of 1 .. 15 bytes (a P-frame, nearly always), short form:
    byte 0      1000b | the copy's length (4 bits)
    ...         the copy, then this frame's own packet
Otherwise, long form:
    byte 0      1001b | copies - 1 (2 bits, 1 .. 3 copies) | check (2 bits: the low two bits of
                the CRC-8 of the bundle with these two bits zeroed)
    per copy    its length (1 byte below 128, else 2: 1xxxxxxx xxxxxxxx, up to 32767) and the
                packet of an earlier frame, verbatim, oldest first (the copies are the frames just
                before this one: copy i of n is frame index - (n - i))
    ...         this frame's own packet (I-frame or P-frame), to the end

An I-frame's first byte starts with 1010b, a bundle's with 1000b or 1001b, a short P-frame's with
11b, a long one's with 0b, so none mix up; 1011b is foreign. The short bundle has no check of its
own (its copy and its packet carry theirs): at 10 fps one byte a frame is 0.08 kbps.
A version-1 packet (first byte 0xA4 / 0xA5) or a version-2 I-frame (0xA8) is refused as
"unsupported bitstream version N (this decoder reads 3...)".
P-frames carry no version, size or parameters: they cannot be decoded without the frame they
extend, which carries all of them. At 10 fps one byte a frame costs 0.078 kbps, 16 % of the
tracked profile's 0.5 kbps budget, hence the one-byte P-frame header. The trade-off: its 4-bit
index still detects every gap of 1..8 frames (9..15 behind reads as out of order), but its 2-bit
check catches only 3 of 4 corrupt P-frames (version 1: 15 of 16 with a check nibble). That is
acceptable because the packet does not travel bare: DDS over UDP checksums every datagram, and
the ROS message (SemanticFrame) repeats the full frame index, type and version, which
``ros.convert.check_semantic`` compares against this header. I-frames, the resynchronisation
points, keep the full 8-bit index and a CRC-8.

Version 3 adds the long form: under loss the encoder predicts from the newest frame the decoder
acknowledged (``SemanticEncoder.acknowledge``), a few frames back; the one byte more is paid only
then (a clean link sends the short form, byte for byte version 2's). It carries the index modulo
256, so the decoder finds the reference by its full 8 bits and refuses one it does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from semcomm_ros.codec.errors import BitstreamError

MAGIC = 0xA
VERSION = 3
P_MARKER = 0b11  # top two bits of a short P-frame's only header byte (an I-frame's are 10b)
P_LONG_MARKER = 0  # top bit of a long P-frame's first byte (predicted from an older frame)
BUNDLE_MARKER = 0b1001  # top nibble of a redundancy bundle's first byte
BUNDLE_SHORT_MARKER = 0b1000  # ... of one carrying one copy of 1 .. 15 bytes
#: most copies of earlier packets one bundle carries
MAX_COPIES = 3
MAX_COPY_BYTES = 0x7FFF
#: the farthest frame a long P-frame may be predicted from (4 bits of distance); a decoder keeps
#: this many decoded frames
MAX_REFERENCE = 15
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

    frame_index: int  # modulo 256 (I-frames, long P-frames) or 16 (short P-frames)
    frame_type: int  # FRAME_I or FRAME_P
    version: int = VERSION
    profile: str | None = None  # I-frames only
    height: int | None = None
    width: int | None = None
    q_symbols: int | None = None
    xi: float | None = None
    period: int | None = None
    header_bytes: int = 1  # bytes before the payload
    packet_bytes: int = 0
    reference: int = 0  # P-frames: predicted from frame index - reference (1 = the previous frame)

    @property
    def is_iframe(self) -> bool:
        return self.frame_type == FRAME_I

    @property
    def frame_type_name(self) -> str:
        return FRAME_TYPE_NAMES[self.frame_type]

    @property
    def index_modulo(self) -> int:
        """What ``frame_index`` counts modulo: 16 in a short P-frame, 256 otherwise."""
        return 16 if self.frame_type == FRAME_P and self.header_bytes == 1 else 256

    @property
    def bits(self) -> int:
        return 8 * self.packet_bytes

    @property
    def payload_bits(self) -> int:
        """The range-coded payload's share of ``bits`` (``payload_of``): no header, no I-frame CRC."""
        return self.bits - 8 * (self.header_bytes + self.is_iframe)


def p_check(packet: bytes) -> int:
    """The check bits of a P-frame: the low two (short form) or three (long form) bits of the
    CRC-8 of the packet with those bits zeroed."""
    mask = 3 if packet[0] >> 6 == P_MARKER else 7
    return crc8(bytes([packet[0] & ~mask & 0xFF]) + bytes(packet[1:])) & mask


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
    reference: int = 1,
) -> bytes:
    if frame_type == FRAME_P:
        if reference == 1:
            out = bytearray([(P_MARKER << 6) | ((frame_index & 0xF) << 2)]) + payload
        elif 2 <= reference <= MAX_REFERENCE:
            out = bytearray([((frame_index & 0xF) << 3), (frame_index & 0xF0) | reference]) + payload
        else:
            raise ValueError(f"P-frame reference distance must be in [1, {MAX_REFERENCE}], got {reference}")
        out[0] |= p_check(bytes(out))
        return bytes(out)
    if frame_type != FRAME_I:
        raise ValueError(f"unknown frame type {frame_type}")
    out = bytearray([(MAGIC << 4) | (VERSION << 2) | frame_type, frame_index & 0xFF])
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
    if not data:
        raise BitstreamError("truncated packet: 0 bytes, a packet has at least 1")
    b0 = data[0]
    if b0 >> 6 == P_MARKER or b0 >> 7 == P_LONG_MARKER:
        short = b0 >> 6 == P_MARKER
        if not short and len(data) < 2:
            raise BitstreamError("truncated P-frame: 1 byte, a P-frame predicted from an older frame has 2 or more")
        check, got = p_check(data), b0 & (3 if short else 7)
        if check != got:
            raise BitstreamError(f"P-frame check mismatch ({check} != {got}): corrupt or truncated packet")
        if short:
            return FrameHeader((b0 >> 2) & 0xF, FRAME_P, VERSION, header_bytes=1, packet_bytes=len(data),
                               reference=1)
        reference = data[1] & 0xF
        if reference < 2:
            raise BitstreamError(f"P-frame reference distance {reference}: a long P-frame predicts from 2 to "
                                 f"{MAX_REFERENCE} frames back")
        return FrameHeader((data[1] & 0xF0) | ((b0 >> 3) & 0xF), FRAME_P, VERSION, header_bytes=2,
                           packet_bytes=len(data), reference=reference)
    if is_bundle(data):
        raise BitstreamError("a redundancy bundle, not one frame's packet: codec.packet.unbundle splits it")
    if b0 >> 4 != MAGIC:
        raise BitstreamError(
            f"foreign packet: first byte 0x{b0:02X} is neither an I-frame (magic nibble 0x{MAGIC:X}) "
            f"nor a P-frame (marker bits 11 or 0)"
        )
    version = (b0 >> 2) & 3
    if version != VERSION:
        raise BitstreamError(
            f"unsupported bitstream version {version} (this decoder reads {VERSION}; "
            f"re-encode with the current semcomm_ros)"
        )
    ftype = b0 & 3
    if ftype != FRAME_I:
        raise BitstreamError(
            f"frame type {ftype} in an I-frame header (version {VERSION} P-frames start with marker bits 11 or 0)"
        )
    if len(data) < 6:
        raise BitstreamError(f"truncated I-frame: {len(data)} bytes, the I-frame header alone needs 6")
    if crc8(data[:-1]) != data[-1]:
        raise BitstreamError(
            f"checksum mismatch (CRC-8 0x{crc8(data[:-1]):02X} != 0x{data[-1]:02X}): corrupt or truncated packet"
        )
    index = data[1]
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


# --- accounting (rates from bits: semcomm_ros.eval.metrics.kbps / bpp) ---------------------------


@dataclass(frozen=True)
class Bundle:
    """What one semantic packet on the link carries: this frame's packet and copies of the packets
    of the frames just before it, oldest first (``unbundle``)."""

    primary: bytes
    copies: tuple[bytes, ...] = ()

    def copy_indices(self, index: int) -> list[int]:
        """The frame indices of the copies, given this packet's own ``index``."""
        n = len(self.copies)
        return [index - (n - i) for i in range(n)]


def _bundle_check(first: int, rest: bytes) -> int:
    return crc8(bytes([first & ~3 & 0xFF]) + rest) & 3


def bundle(copies, primary: bytes) -> bytes:
    """This frame's packet behind copies of the packets of the frames just before it (oldest
    first): a packet lost on the link is decoded from the next one that arrives, at the cost of its
    bytes again plus one byte per copy and one for the bundle. No copies: the packet as is."""
    copies = [bytes(c) for c in copies]
    if not copies:
        return bytes(primary)
    if len(copies) > MAX_COPIES:
        raise ValueError(f"a bundle carries at most {MAX_COPIES} copies, got {len(copies)}")
    if not primary:
        raise ValueError("a bundle needs its own frame's packet")
    if len(copies) == 1 and 1 <= len(copies[0]) <= 15:
        return bytes([(BUNDLE_SHORT_MARKER << 4) | len(copies[0])]) + copies[0] + bytes(primary)
    out = bytearray([(BUNDLE_MARKER << 4) | ((len(copies) - 1) << 2)])
    for c in copies:
        if not 1 <= len(c) <= MAX_COPY_BYTES:
            raise ValueError(f"a copy must be 1..{MAX_COPY_BYTES} bytes, got {len(c)}")
        out += bytes([len(c)]) if len(c) < 0x80 else bytes([0x80 | len(c) >> 8, len(c) & 0xFF])
        out += c
    out += primary
    out[0] |= _bundle_check(out[0], bytes(out[1:]))
    return bytes(out)


def is_bundle(packet: bytes) -> bool:
    return bool(packet) and packet[0] >> 4 in (BUNDLE_MARKER, BUNDLE_SHORT_MARKER)


def unbundle(packet: bytes) -> Bundle:
    """A link packet's parts; a plain packet (no bundle) is its own primary. Raises BitstreamError
    on a damaged bundle (check bits, lengths that run past the end, nothing left for the primary)."""
    packet = bytes(packet)
    if not is_bundle(packet):
        return Bundle(packet)
    if packet[0] >> 4 == BUNDLE_SHORT_MARKER:
        length = packet[0] & 0xF
        if length == 0 or 1 + length >= len(packet):
            raise BitstreamError(f"redundancy bundle of one {length}-byte copy in {len(packet)} bytes: "
                                 f"{'no copy' if length == 0 else 'truncated'}")
        return Bundle(packet[1 + length:], (packet[1:1 + length],))
    if _bundle_check(packet[0], packet[1:]) != packet[0] & 3:
        raise BitstreamError("redundancy bundle check bits do not match: corrupt packet")
    n, pos, copies = ((packet[0] >> 2) & 3) + 1, 1, []
    if n > MAX_COPIES:
        raise BitstreamError(f"redundancy bundle names {n} copies (at most {MAX_COPIES})")
    for k in range(n):
        if pos >= len(packet):
            raise BitstreamError(f"redundancy bundle truncated before copy {k + 1} of {n}")
        length = packet[pos]
        pos += 1
        if length & 0x80:
            if pos >= len(packet):
                raise BitstreamError(f"redundancy bundle truncated in copy {k + 1}'s length")
            length = (length & 0x7F) << 8 | packet[pos]
            pos += 1
        if length == 0 or pos + length > len(packet):
            raise BitstreamError(f"redundancy bundle copy {k + 1} of {n}: length {length} runs past the "
                                 f"packet's {len(packet)} bytes")
        copies.append(packet[pos:pos + length])
        pos += length
    if pos >= len(packet):
        raise BitstreamError("redundancy bundle without its own frame's packet")
    return Bundle(packet[pos:], tuple(copies))


def frame_bits(packet: bytes) -> int:
    """Exact cost of one frame on the link: every byte of the packet, header and checksum included.

    The one place bits are counted from raw packet bytes, of either stream (semantic or low-res)."""
    return 8 * len(packet)
