"""hermes: a speech-to-text gateway in front of NVIDIA Triton serving OpenAI Whisper."""

__version__ = "0.1.0"
