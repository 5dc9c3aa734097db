"""What every part of the gateway shares: the transcript types and the contract between the
modes and any speech-to-text backend. Imports nothing of Triton."""
