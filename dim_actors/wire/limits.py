"""Sizes both ends of a gateway socket agree on, defined once."""

# The documented inbound limit of the Diminuendo protocol: a larger frame is
# MESSAGE_TOO_LARGE.
MAX_FRAME_BYTES = 1_048_576
# What a socket of ours accepts in one frame, gateway or replication link: far above the
# protocol's limit (a 1 MB text_delta must pass, and a gateway answers an oversized
# frame with an error rather than a dropped socket), far below harm.
MAX_SOCKET_FRAME = 16 << 20
# Bytes in one file name: Linux, macOS and Windows file systems all stop there.
NAME_MAX = 255
