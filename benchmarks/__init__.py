"""hermes benchmarks: the service against openai-whisper and faster-whisper, same machine, same run.

`make bench` or `python -m benchmarks` (see benchmarks/README.md).
"""
