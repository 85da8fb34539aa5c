"""Links the core gives plugins: WebSocket, Socket.IO, webhook, and groups of them."""
