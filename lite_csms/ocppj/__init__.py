"""Sans-IO OCPP-J: framing, validation and call correlation, with no sockets and no clock."""
