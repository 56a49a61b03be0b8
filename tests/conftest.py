"""Shared fixtures: offline Hugging Face, loopback-only sockets, one MiniLM per session, the toy dataset.

Plain helpers (the toy data, a tiny cross-encoder, a toy pool) live in ``tests/helpers.py``; every
test imports them from there, as ``from tests.helpers import ...``.
"""
from __future__ import annotations

import copy
import ipaddress
import os
import socket

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model comes from an installed package
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from retrlab.data.dataset import RetrievalData  # noqa: E402

_real_connect = socket.socket.connect


def _loopback_only_connect(sock: socket.socket, address) -> None:
    """The offline guarantee: tests may talk to servers they start on 127.0.0.1, nothing else."""
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            # an OSError, as on a machine without a network: code that handles being offline is tested as such
            raise ConnectionRefusedError(f"network access blocked in tests: connect to {address!r}")
    return _real_connect(sock, address)


socket.socket.connect = _loopback_only_connect
from retrlab.encoders import BiEncoder  # noqa: E402
from tests.helpers import make_toy_data  # noqa: E402


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread, and far faster when the cores are shared
    (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def float32(monkeypatch):
    """retrlab's encoders in float32, whatever the CPU. For tests that compare with a float32 reference
    (sentence-transformers) or count distinct scores: under ``auto`` a CPU with native bf16 encodes and
    trains in bf16 (``retrlab.precision``), which such tests would read as a difference. bf16's own
    agreement with float32 is tested in test_precision.py."""
    monkeypatch.setenv("RETRLAB_PRECISION", "fp32")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty cache folder of the test's own."""
    monkeypatch.setenv("RETRLAB_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def _minilm() -> BiEncoder:
    return BiEncoder.minilm()


@pytest.fixture
def minilm(_minilm) -> BiEncoder:
    """A fresh copy per test, so a test that trains does not change another's model."""
    return copy.deepcopy(_minilm)


@pytest.fixture
def toy_data() -> RetrievalData:
    return make_toy_data()
