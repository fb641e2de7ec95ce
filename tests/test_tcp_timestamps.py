"""The start-up note on TCP timestamps, and that the kernel setting it reads is the one in force."""

import socket
import struct
from pathlib import Path

import pytest

from lite_csms.net.listener import TCP_TIMESTAMPS, tcp_timestamps_note


def test_note_only_when_timestamps_are_on(tmp_path: Path):
    setting = tmp_path / "tcp_timestamps"
    setting.write_text("1\n")
    note = tcp_timestamps_note(setting)
    assert note is not None and "tcp_timestamps=1" in note and "12 B" in note
    setting.write_text("2\n")  # timestamps without the random offset: still 12 B a segment
    assert tcp_timestamps_note(setting) is not None
    setting.write_text("0\n")
    assert tcp_timestamps_note(setting) is None
    assert tcp_timestamps_note(tmp_path / "missing") is None


@pytest.mark.skipif(not TCP_TIMESTAMPS.exists(), reason="Linux only")
def test_the_setting_read_is_what_loopback_connections_negotiate():
    # struct tcp_info: state, ca_state, retransmits, probes, backoff, options (u8 each).
    wanted = TCP_TIMESTAMPS.read_text().strip() != "0"
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with client, accepted:
            info = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            options = struct.unpack_from("B", info, 5)[0]
            assert bool(options & 1) == wanted  # TCPI_OPT_TIMESTAMPS
            assert (tcp_timestamps_note() is not None) == wanted
