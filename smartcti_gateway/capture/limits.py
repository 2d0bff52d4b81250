"""The capture's bounds, in one stdlib-only place (the command line reads them without loading aiohttp)."""

DEFAULT_MAX_BYTES = 200_000_000   # --max-bytes default: 200 MB
MIN_MAX_BYTES = 16384             # the header and the last line must fit
BODY_CAP = 1 << 20                # bytes of one message's body kept in the file (the rest: "truncated")
