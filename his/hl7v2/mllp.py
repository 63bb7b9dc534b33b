"""MLLP byte framing: ``0x0B payload 0x1C 0x0D``, nothing about HL7 content.

The listener, the outbound client and the test peer all frame and deframe through this
module, so every rule about what the wire may contain is decided once, here:

- Bytes outside a frame (anything before a ``0x0B``: NUL, CR, LF, stray text) are junk.
  Senders in the field emit ``00 00 0D 0A`` between frames; we skip it and count it in
  ``Deframer.discarded_bytes`` so the listener can log and the admin page can show it.
- Inside a frame every byte is payload until ``0x1C``. A ``0x0B`` inside a frame is
  payload too (as Mirth and HAPI read it): HL7 forbids it in content, and restarting the
  frame on it would silently cut a message in two.
- ``0x1C`` ends the frame on its own; the ``0x0D`` after it is expected but optional.
  MLLP release 1 says the block ends with ``1C 0D``, but some senders stop after ``1C``
  and then wait for the ACK. Waiting for a ``0D`` that never comes would deadlock both
  sides until a timeout, so the frame is delivered as soon as its ``1C`` is read; a
  following ``0D`` is consumed as part of the trailer (not counted as junk), any other
  byte is treated as the junk/start byte that it is. The price: a ``0x1C`` inside content
  ends the frame early, and the broken remainder is rejected upstream rather than hanging.
  HL7 forbids ``0x1C`` in content, and ``frame()`` refuses to build such a frame.
- A frame whose payload outgrows ``max_frame`` raises ``FrameTooLarge`` as soon as the limit
  is crossed, never buffering more than ``max_frame`` bytes. The rest of that frame, up to
  its ``0x1C``, is then discarded (counted) and deframing resumes at the next ``0x0B``.
"""

from __future__ import annotations

START = b"\x0b"
END = b"\x1c\x0d"

_START_BYTE = 0x0B
_END_BYTE = 0x1C
_CR = 0x0D

DEFAULT_MAX_FRAME = 10 * 1024 * 1024

# Deframer states.
_HUNT = 0  # between frames, looking for 0x0B
_IN_FRAME = 1  # collecting payload until 0x1C
_SKIP = 2  # discarding the remainder of an oversized frame until its 0x1C

# What the byte after a 0x1C is, if it is a 0x0D.
_NO_TRAILER = 0
_TRAILER_OF_FRAME = 1  # trailer of a delivered frame: framing, not junk
_TRAILER_OF_DISCARDED = 2  # trailer of an oversized frame: counted as discarded


def frame(payload: bytes) -> bytes:
    """Wrap one payload in the MLLP block: ``0x0B payload 0x1C 0x0D``.

    Raises ValueError if the payload holds ``0x1C``: the receiver would end the frame there.
    """
    if _END_BYTE in payload:
        raise ValueError("MLLP payload must not contain 0x1C (end of block)")
    return START + payload + END


class FrameTooLarge(Exception):
    """A frame's payload grew past ``max_frame``.

    Raised by ``Deframer.feed`` at the point the limit is crossed. ``frames`` holds the
    frames completed earlier in the same ``feed`` call, in order, so a caller can still
    answer them before dealing with the oversized one. Input after the crossing point is
    kept (at most the rest of that one chunk) and processed by the next ``feed`` call,
    ``feed(b"")`` included, which first discards the rest of the oversized frame.
    """

    def __init__(self, limit: int, frames: list[bytes]):
        super().__init__(f"MLLP frame larger than {limit} bytes")
        self.limit = limit
        self.frames = frames


class Deframer:
    """Incremental MLLP deframer for one byte stream (one connection).

    ``feed(data)`` returns the payloads completed by ``data``, in order, without the block
    characters. Any split of the stream into reads gives the same frames.

    Counters, for logs and metrics:
    - ``discarded_bytes``: bytes received that did not belong to a delivered frame (junk
      between frames, oversized frames, a partial frame dropped by ``close()``);
    - ``frames``: frames delivered; ``oversized_frames``: frames refused by size;
    - ``pending_bytes``: bytes held for a frame not yet complete (0 between frames), so the
      caller can tell an idle connection from one stalled mid-frame.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME):
        if max_frame < 1:
            raise ValueError("max_frame must be positive")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._state = _HUNT
        self._trailer = _NO_TRAILER
        self._carry = b""
        self.discarded_bytes = 0
        self.frames = 0
        self.oversized_frames = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes of a started but unfinished frame (its 0x0B included), plus unread input."""
        started = 1 + len(self._buf) if self._state == _IN_FRAME else 0
        return started + len(self._carry)

    @property
    def in_frame(self) -> bool:
        return self._state != _HUNT or bool(self._carry)

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the payloads it completes. See ``FrameTooLarge``."""
        if self._carry:
            data = self._carry + data
            self._carry = b""
        out: list[bytes] = []
        i, n = 0, len(data)
        while i < n:
            if self._trailer:
                if data[i] == _CR:
                    if self._trailer == _TRAILER_OF_DISCARDED:
                        self.discarded_bytes += 1
                    i += 1
                self._trailer = _NO_TRAILER
                continue
            if self._state == _HUNT:
                j = data.find(START, i)
                if j < 0:
                    self.discarded_bytes += n - i
                    break
                self.discarded_bytes += j - i
                self._state = _IN_FRAME
                i = j + 1
            elif self._state == _IN_FRAME:
                j = data.find(_END_BYTE, i)
                stop = n if j < 0 else j
                room = self.max_frame - len(self._buf)
                if stop - i > room:
                    # Cross the limit here: drop what was held, keep the unread input for
                    # the next call, which discards the rest of this frame.
                    self.discarded_bytes += 1 + len(self._buf) + room
                    self._buf.clear()
                    self._state = _SKIP
                    self.oversized_frames += 1
                    self._carry = bytes(data[i + room :])
                    raise FrameTooLarge(self.max_frame, out)
                self._buf += data[i:stop]
                if j < 0:
                    break
                out.append(bytes(self._buf))
                self._buf.clear()
                self.frames += 1
                self._state = _HUNT
                self._trailer = _TRAILER_OF_FRAME
                i = j + 1
            else:  # _SKIP
                j = data.find(_END_BYTE, i)
                if j < 0:
                    self.discarded_bytes += n - i
                    break
                self.discarded_bytes += j + 1 - i
                self._state = _HUNT
                self._trailer = _TRAILER_OF_DISCARDED
                i = j + 1
        return out

    def close(self) -> int:
        """End of stream: drop any partial frame and return how many bytes were dropped.

        Nothing can complete at end of stream (a frame completes on its 0x1C), so this
        only reports what was lost; the deframer is ready for a new stream afterwards.
        """
        dropped = self.pending_bytes
        self.discarded_bytes += dropped
        self._buf.clear()
        self._carry = b""
        self._state = _HUNT
        self._trailer = _NO_TRAILER
        return dropped
