"""Reading a kernel's replies in slices, so a reply the event loop was not woken for is still read.

nbclient (behind ``retrlab notebooks``, the notebook tests and Voila) waits for each cell's
``execute_reply`` with ``await kc.shell_channel.get_msg(timeout=...)``: a ``zmq.asyncio`` poll that
wakes when the socket's file descriptor signals. That descriptor is edge-triggered, and a synchronous
look at the socket's events elsewhere consumes the edge: the reply then sits in the socket while the
poll sleeps on. Without a timeout it sleeps forever; with one, until the timeout, and only then reads
the reply (``tests/test_kernel_wait.py`` reproduces both with jupyter_client's own channel class).
Seen on our 2-core machines in 2026-11: 15 of 91 dashboard page loads hung (pyzmq 26.4 and 27.3,
ipykernel 6.31 and 7.4 alike), and on 2026-11-30 two smoke notebooks of a CI rehearsal took 278 s
instead of about 40: each waited out the test's 240-s cell timeout with its reply already there.

The fix: a wait becomes waits of ``SLICE_S`` seconds in a row, up to the same deadline. Each new
poll first checks the socket's events, so a reply that arrived unseen is read within a slice.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Empty
from typing import Any

from jupyter_client.channels import AsyncZMQSocketChannel

SLICE_S = 1.0  # longest wait before a pending message the event loop was not woken for is read

_unsliced_get_msg = AsyncZMQSocketChannel.get_msg


async def get_msg_in_slices(channel: AsyncZMQSocketChannel, timeout: float | None = None) -> dict[str, Any]:
    """``AsyncZMQSocketChannel.get_msg``, polling again every ``SLICE_S`` s until ``timeout`` (None: forever)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SLICE_S if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return await _unsliced_get_msg(channel, min(SLICE_S, left))
        except Empty:
            if deadline is not None and time.monotonic() >= deadline:
                raise  # the caller's own timeout: nothing came
            # nothing yet, or a reply we were not woken for: the next poll sees it


@contextmanager
def sliced_waits() -> Iterator[None]:
    """Within the block, every jupyter_client async channel reads in slices (``get_msg_in_slices``)."""
    AsyncZMQSocketChannel.get_msg = get_msg_in_slices
    try:
        yield
    finally:
        AsyncZMQSocketChannel.get_msg = _unsliced_get_msg
