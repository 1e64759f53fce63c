"""Errors shared by every bitstream of the package."""


class BitstreamError(ValueError):
    """A packet is corrupt, truncated, foreign, of an unknown version or out of order.

    The message always says what is wrong; decoders never raise anything else on bad bytes.
    """
