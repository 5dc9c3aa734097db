"""Operator tools and clients: the `hermes` command, the local Triton launcher and supervisor,
and the upload, stream and direct-Triton clients."""
