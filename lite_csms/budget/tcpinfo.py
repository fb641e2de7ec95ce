"""What the kernel says a TCP socket moved: Linux TCP_INFO, turned into IP-level bytes.

Operators bill at the IP level, so every segment counts once with its IP and TCP headers,
options included, and retransmissions count again.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

# struct tcp_info offsets (linux/tcp.h), stable since 4.19.
_OPTIONS = 5
_BYTES_ACKED = 120
_BYTES_RECEIVED = 128
_SEGS_OUT = 136
_BYTES_SENT = 200
_FULL_SIZE = 232
_TOTAL_RETRANS = 100
_MIN_SIZE = 144
TCPI_OPT_TIMESTAMPS = 1
# tcp_states: a socket still held open settles here once both FINs are through (or on reset).
CLOSED = 7
# The timestamp option takes 10 bytes, padded to 12, in every segment once negotiated.
TIMESTAMP_OPTION = 12
# SYN and SYN-ACK carry MSS, SACK-permitted, timestamps and window scale: 20 option bytes.
SYN_OPTIONS = 20
TCP_HEADER = 20
IP_HEADER = {socket.AF_INET: 20, socket.AF_INET6: 40}


# Not frozen, though never changed once made: a frozen dataclass's __init__ took 2.6 us
# (a setattr per field), and a stop makes two or three of these per connection.
@dataclass(slots=True)
class TcpCounters:
    segs_in: int
    segs_out: int
    bytes_in: int
    # Every byte sent, retransmissions included.
    bytes_out: int
    bytes_retrans: int
    timestamps: bool
    # Linux tcp_states: 1 established, 7 closed, 8 close-wait (the peer's FIN has arrived).
    state: int = 1
    # Segments sent a second time (tcpi_total_retrans): their headers are in segs_out.
    segs_retrans: int = 0

    def __sub__(self, other: TcpCounters) -> TcpCounters:
        return TcpCounters(
            self.segs_in - other.segs_in, self.segs_out - other.segs_out,
            self.bytes_in - other.bytes_in, self.bytes_out - other.bytes_out,
            self.bytes_retrans - other.bytes_retrans, self.timestamps,
            segs_retrans=self.segs_retrans - other.segs_retrans,
        )


ZERO = TcpCounters(0, 0, 0, 0, 0, False)


def read(sock: socket.socket | object) -> TcpCounters | None:
    """The socket's counters, or None where TCP_INFO is missing (not Linux, not TCP)."""
    getsockopt = getattr(sock, "getsockopt", None)
    if getsockopt is None or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        raw = getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _FULL_SIZE)
    except OSError:
        return None
    if len(raw) < _MIN_SIZE:
        return None
    acked, received = struct.unpack_from("QQ", raw, _BYTES_ACKED)
    segs_out, segs_in = struct.unpack_from("II", raw, _SEGS_OUT)
    if len(raw) >= _BYTES_SENT + 16:
        sent, retrans = struct.unpack_from("QQ", raw, _BYTES_SENT)
    else:
        # Older kernels: what the peer acknowledged is the closest figure to what was sent.
        sent, retrans = acked, 0
    (segs_retrans,) = struct.unpack_from("I", raw, _TOTAL_RETRANS)
    return TcpCounters(segs_in, segs_out, received, sent, retrans,
                       bool(raw[_OPTIONS] & TCPI_OPT_TIMESTAMPS), raw[0], segs_retrans)


def segment_header(family: int, timestamps: bool) -> int:
    return IP_HEADER.get(family, 20) + TCP_HEADER + (TIMESTAMP_OPTION if timestamps else 0)


# Not frozen, though never changed once made: a frozen dataclass's __init__ took 2.6 us
# (a setattr per field), and a stop makes two or three of these per connection.
@dataclass(slots=True)
class IpBytes:
    bytes_in: int
    bytes_out: int


def ip_bytes(counters: TcpCounters, family: int) -> IpBytes:
    header = segment_header(family, counters.timestamps)
    return IpBytes(counters.bytes_in + counters.segs_in * header,
                   counters.bytes_out + counters.segs_out * header)


def handshake_bytes(family: int, timestamps: bool, *, server_side: bool) -> IpBytes:
    """The three-way handshake: SYN and SYN-ACK with their options, then the bare ACK.

    Linux counts the SYN-ACK in no accepted socket's segs_out and counts the client's SYN in
    its bytes_acked; a server adds the SYN-ACK here and the caller leaves it out elsewhere.
    """
    base = IP_HEADER.get(family, 20) + TCP_HEADER
    syn = base + SYN_OPTIONS
    ack = base + (TIMESTAMP_OPTION if timestamps else 0)
    if server_side:
        return IpBytes(bytes_in=syn + ack, bytes_out=syn)
    return IpBytes(bytes_in=syn, bytes_out=syn + ack)
