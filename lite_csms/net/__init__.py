"""The trio I/O layer: listening, the WebSocket handshake, and one nursery per connection."""
