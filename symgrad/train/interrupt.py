"""Ctrl-C during a run: stop at the next step boundary and return the iterate reached.

While a run is active in the main thread (and SIGINT has Python's default handler), the first
Ctrl-C only sets :attr:`Interrupt.requested`; the loops check it between steps (the Python loop)
or between slices of bounded wall time (the compiled loop, :data:`SLICE_SECONDS`) and end with
``status="interrupted"`` and the last iterate. A second Ctrl-C raises KeyboardInterrupt at once,
as usual (for an evaluation that itself takes long). A handler the user installed, SIG_IGN, or a
run outside the main thread are left alone.
"""

from __future__ import annotations

import signal
import threading

try:  # the C functions behind signal.signal/getsignal, without their enum conversions (~20 us)
    from _signal import getsignal as _getsignal
    from _signal import signal as _setsignal
except ImportError:  # pragma: no cover - another Python implementation
    _getsignal, _setsignal = signal.getsignal, signal.signal
from types import FrameType, TracebackType

__all__ = ["SLICE_SECONDS", "Interrupt", "interrupted_message"]

#: Wall time of one slice of the compiled loop: Ctrl-C takes effect within about this long.
SLICE_SECONDS = 0.2


class Interrupt:
    """Context manager turning the first SIGINT into a request the loop polls."""

    def __init__(self) -> None:
        self.requested = False
        self._installed = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # the second Ctrl-C: do not wait for the loop
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> Interrupt:
        if (threading.current_thread() is threading.main_thread()
                and _getsignal(signal.SIGINT) is signal.default_int_handler):
            _setsignal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, tp: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._installed:
            _setsignal(signal.SIGINT, signal.default_int_handler)
            self._installed = False


def interrupted_message(k: int) -> str:
    return (f"interrupted (Ctrl-C) at step {k}: x is the iterate reached; fun and jac are the "
            "loss and gradient there")
