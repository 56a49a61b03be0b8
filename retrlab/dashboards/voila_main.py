"""Voila for ``retrlab present``, with one fix: a kernel's reply that the event loop missed is still read.

Voila executes the dashboard notebook with nbclient, which waits for each cell's ``execute_reply``
with ``await kc.shell_channel.get_msg(timeout=None)``: a ``zmq.asyncio`` poll that wakes when the
socket's file descriptor signals. That descriptor is edge-triggered, and a synchronous look at the
socket's events elsewhere consumes the edge: the reply then sits in the socket while the poll is
never woken (``tests/test_present.py`` reproduces it with jupyter_client's own channel class). On
2026-11-30 this stalled 15 of 91 runs of the dashboard test's two page loads on our 2-core machines
(pyzmq 26.4 and 27.3, ipykernel 6.31 and 7.4 alike): the kernel idle, its reply to the first cell
pending in Voila's shell socket (``zmq.EVENTS`` showed ``POLLIN``), and the page loading forever.
With this fix: 0 of 24 runs.

The fix: an unbounded wait becomes waits of ``SLICE_S`` seconds in a row. Each new poll first checks
the socket's events, so a reply that arrived unseen is read within a slice. Waits with a timeout are
left as they are. Run as ``python -m retrlab.dashboards.voila_main`` with Voila's arguments.
"""
from __future__ import annotations

import sys
from queue import Empty
from typing import Any

from jupyter_client.channels import AsyncZMQSocketChannel

SLICE_S = 1.0  # longest wait before a pending message the event loop was not woken for is read

_unsliced_get_msg = AsyncZMQSocketChannel.get_msg


async def get_msg_in_slices(channel: AsyncZMQSocketChannel, timeout: float | None = None) -> dict[str, Any]:
    """``AsyncZMQSocketChannel.get_msg``, but a wait without timeout polls again every ``SLICE_S`` s."""
    if timeout is not None:
        return await _unsliced_get_msg(channel, timeout)
    while True:
        try:
            return await _unsliced_get_msg(channel, SLICE_S)
        except Empty:
            continue  # nothing yet, or a reply we were not woken for: the next poll sees it


def main() -> None:
    """Voila's own command line (``sys.argv``), with jupyter_client's channels reading in slices."""
    AsyncZMQSocketChannel.get_msg = get_msg_in_slices
    from voila.app import main as voila

    sys.argv[0] = "voila"
    voila()


if __name__ == "__main__":
    main()
