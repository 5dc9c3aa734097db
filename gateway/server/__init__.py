"""The HTTP and WebSocket server: the app factory, settings, routes, admission, access and
error handling."""
