"""Links the core runs for plugins: WebSocket, Socket.IO, webhooks, HTTP, tokens, link state."""
