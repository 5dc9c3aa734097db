"""The two ways audio becomes text: file mode (packed 30 s windows, for accuracy) and live
streams (short steps on a shared beat, for latency), with the audio decoding and voice detector
they share. They speak to a backend only through `gateway.core.contract`."""
