// Microphone capture for the live page, run on the audio rendering thread.
//
// Takes the AudioContext's samples (often 48 or 44.1 kHz, float32, one 128-sample render
// quantum at a time), resamples them to 16 kHz with a windowed-sinc low-pass filter and
// posts them to the main thread as Int16Array chunks (PCM16, the stream's wire format).
//
// The resampler keeps its input history between quanta, so the output is the same whatever
// the sizes of the chunks it is fed: no clicks at quantum boundaries.
//
// Outside an AudioWorkletGlobalScope (a plain page or a test) the file only defines
// `globalThis.HermesPcm = {Resampler, floatToInt16}`.

"use strict";

/** Streaming sample-rate converter: band-limited interpolation with a windowed sinc. */
class Resampler {
  /**
   * @param {number} inputRate  samples per second fed in
   * @param {number} outputRate samples per second produced
   * @param {object} [options]
   * @param {number} [options.zeroCrossings=8] kernel half-width, in zero crossings of the sinc
   * @param {number} [options.rolloff=0.92]    cutoff as a fraction of the lower Nyquist frequency
   * @param {number} [options.tableDensity=512] kernel table entries per input sample
   */
  constructor(inputRate, outputRate, { zeroCrossings = 8, rolloff = 0.92, tableDensity = 512 } = {}) {
    if (!(inputRate > 0 && outputRate > 0)) throw new RangeError("sample rates must be positive");
    this.inputRate = inputRate;
    this.outputRate = outputRate;
    this.passthrough = inputRate === outputRate;

    // Cutoff in cycles per input sample, over 0.5 (the input's Nyquist): below the output's
    // Nyquist when downsampling (anti-aliasing), below the input's when upsampling.
    const cutoff = 0.5 * rolloff * Math.min(1, outputRate / inputRate);
    this.halfWidth = zeroCrossings / (2 * cutoff); // in input samples
    this.density = tableDensity;
    const size = Math.ceil(this.halfWidth * tableDensity) + 2;
    this.table = new Float32Array(size);
    for (let i = 0; i < size; i++) {
      const x = i / tableDensity; // distance from the output instant, in input samples
      const u = x / this.halfWidth;
      const sinc = x === 0 ? 1 : Math.sin(2 * Math.PI * cutoff * x) / (2 * Math.PI * cutoff * x);
      // Blackman window: good stop-band attenuation for a short kernel.
      const window = u >= 1 ? 0 : 0.42 + 0.5 * Math.cos(Math.PI * u) + 0.08 * Math.cos(2 * Math.PI * u);
      this.table[i] = 2 * cutoff * sinc * window;
    }

    // Input history: `buffer[0 .. length)` holds the samples with absolute indices
    // `start .. start + length)`. Samples before index 0 count as silence.
    const margin = Math.ceil(this.halfWidth) + 1;
    this.buffer = new Float32Array(4096);
    this.start = -margin;
    this.length = margin;
    this.received = 0; // input samples fed so far
    this.produced = 0; // output samples made so far
    this.time = 0; // absolute input position of the next output sample
  }

  kernel(distance) {
    const position = Math.abs(distance) * this.density;
    const index = Math.floor(position);
    if (index >= this.table.length - 1) return 0;
    const fraction = position - index;
    return this.table[index] + (this.table[index + 1] - this.table[index]) * fraction;
  }

  append(samples) {
    if (this.length + samples.length > this.buffer.length) {
      const grown = new Float32Array(Math.max(2 * this.buffer.length, this.length + samples.length));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    this.buffer.set(samples, this.length);
    this.length += samples.length;
  }

  /** Produce every output sample whose kernel lies inside the history, up to `limit`. */
  drain(limit) {
    const out = [];
    const end = this.start + this.length; // one past the last absolute index held
    while (this.time < limit && this.time + this.halfWidth < end) {
      const first = Math.max(this.start, Math.floor(this.time - this.halfWidth) + 1);
      const last = Math.min(end - 1, Math.floor(this.time + this.halfWidth));
      let sum = 0;
      for (let k = first; k <= last; k++) {
        sum += this.buffer[k - this.start] * this.kernel(this.time - k);
      }
      out.push(sum);
      this.produced += 1;
      // From the count rather than by adding `step`: no drift, and exact at whole samples.
      this.time = (this.produced * this.inputRate) / this.outputRate;
    }
    // Forget the samples no future output sample can reach.
    const keepFrom = Math.floor(this.time - this.halfWidth);
    const drop = Math.min(this.length, Math.max(0, keepFrom - this.start));
    if (drop > 0) {
      this.buffer.copyWithin(0, drop, this.length);
      this.length -= drop;
      this.start += drop;
    }
    return Float32Array.from(out);
  }

  /** Feed input samples (any chunk size); returns the output samples now complete. */
  process(samples) {
    if (this.passthrough) return Float32Array.from(samples);
    this.append(samples);
    this.received += samples.length;
    return this.drain(Infinity);
  }

  /** End of input: returns the remaining output samples, as if silence followed. */
  flush() {
    if (this.passthrough) return new Float32Array(0);
    this.append(new Float32Array(Math.ceil(this.halfWidth) + 2));
    return this.drain(this.received);
  }
}

/** Float samples in [-1, 1] to little-endian-ready signed 16-bit integers (clipped). */
function floatToInt16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    out[i] = Math.round(s < 0 ? s * 0x8000 : s * 0x7fff);
  }
  return out;
}

if (typeof AudioWorkletProcessor === "function" && typeof registerProcessor === "function") {
  /**
   * Input: the microphone (mixed down to mono here if it has several channels).
   * Messages out: Int16Array chunks, then `{type: "flushed"}` after a `{type: "flush"}` in.
   */
  class PcmWorkletProcessor extends AudioWorkletProcessor {
    constructor(options) {
      super();
      const targetRate = (options.processorOptions && options.processorOptions.targetRate) || 16000;
      // `sampleRate` is the AudioContext's rate, a global of the worklet scope.
      this.resampler = new Resampler(sampleRate, targetRate);
      this.finished = false;
      this.port.onmessage = (event) => {
        if (event.data && event.data.type === "flush" && !this.finished) {
          this.finished = true;
          this.post(this.resampler.flush());
          this.port.postMessage({ type: "flushed" });
        }
      };
    }

    post(samples) {
      if (samples.length === 0) return;
      const pcm = floatToInt16(samples);
      this.port.postMessage(pcm, [pcm.buffer]);
    }

    process(inputs) {
      if (this.finished) return false;
      const channels = inputs[0];
      if (!channels || channels.length === 0) return true; // no input connected yet
      let mono = channels[0];
      if (channels.length > 1) {
        mono = new Float32Array(mono.length);
        for (const channel of channels) {
          for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / channels.length;
        }
      }
      this.post(this.resampler.process(mono));
      return true;
    }
  }

  registerProcessor("pcm-worklet", PcmWorkletProcessor);
} else {
  globalThis.HermesPcm = { Resampler, floatToInt16 };
}
