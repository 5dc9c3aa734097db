"""The Triton backend: the tensor format of the `whisper` model, one client per replica, and
the pool that spreads windows over replicas. Implements `gateway.core.contract.ModelBackend`."""
