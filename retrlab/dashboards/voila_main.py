"""Voila for ``retrlab present``, with one fix: a kernel's reply that the event loop missed is still read.

Voila executes the dashboard notebook with nbclient, whose unbounded wait for a cell's reply can
sleep forever on a reply already in the socket (``retrlab.kernel_wait`` says why). On 2026-11-30
this stalled 15 of 91 runs of the dashboard test's two page loads; with the fix, 0 of 24. Run as
``python -m retrlab.dashboards.voila_main`` with Voila's arguments.
"""
from __future__ import annotations

import sys

from jupyter_client.channels import AsyncZMQSocketChannel

from retrlab.kernel_wait import get_msg_in_slices


def main() -> None:
    """Voila's own command line (``sys.argv``), with jupyter_client's channels reading in slices."""
    AsyncZMQSocketChannel.get_msg = get_msg_in_slices  # for the life of the process
    from voila.app import main as voila

    sys.argv[0] = "voila"
    voila()


if __name__ == "__main__":
    main()
