"""Names of directions, layers and pseudo-actions in the traffic counters.

Kept apart from the meter so that readers of the counters (the CLI) need not load the
network stack.
"""

IN, OUT = "in", "out"
DIRECTIONS = (IN, OUT)
PAYLOAD, WS, TLS, IP = "payload", "ws", "tls", "ip"
LAYERS = (PAYLOAD, WS, TLS, IP)
TCP_SETUP = "(tcp-handshake)"
TLS_SETUP = "(tls-handshake)"
HTTP_SETUP = "(http-upgrade)"
CONTROL = "(ws-control)"
TLS_ONLY = "(tls-other)"
TCP_ONLY = "(tcp-only)"
TEARDOWN = "(teardown)"
SETUP_ACTIONS = (TCP_SETUP, TLS_SETUP, HTTP_SETUP)
# A whole handshake the CSMS refused (401, 429, 503): its TCP, TLS and HTTP bytes.
REFUSED_HANDSHAKE = "(refused-handshake)"
