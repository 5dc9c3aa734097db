// The live tab: microphone -> AudioWorklet (16 kHz PCM16) -> WebSocket /stream-audio -> transcript.
//
// States shown in #status (also in its data-state attribute):
//   idle -> connecting -> listening -> finishing -> closed
// and "error" (with the reason) when the microphone, the connection or the server fails.
// Each final is a line with its start time; skipped audio and the server's errors are lines
// of the transcript where they happened. Once the stream has ended, the finals can be copied
// and downloaded as text or SubRip.

import { apiKey } from "./access.js";
import { FORMATS, copy, download, lineParts } from "./transcript.js";

const TARGET_RATE = 16000; // what the page sends: PCM16 mono at 16 kHz
const FRAME_SAMPLES = TARGET_RATE / 10; // 100 ms per WebSocket frame (3200 bytes)
const FLUSH_TIMEOUT_MS = 1000; // for the worklet to hand over its last samples
const DONE_TIMEOUT_MS = 60000; // for the server's "done" after "stop"
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const METER_FLOOR_DB = -60; // the level meter's empty end, in dBFS; its full end is 0 dBFS
const METER_DECAY = 0.9; // per chunk of audio: the meter falls back smoothly

const SKIP_REASONS = {
  overload: "the server fell behind",
  model_unavailable: "the speech model was unavailable",
  model_error: "the speech model failed on this audio",
  rejected: "the speech model refused this audio",
};

const $ = (id) => document.getElementById(id);

/** Wire up the live tab; `access.ask(message)` asks the user for an API key. */
export function setupLive(access) {
  const ui = {
    start: $("start"),
    stop: $("stop"),
    status: $("status"),
    lines: $("live-lines"),
    partial: $("partial"),
    level: $("level"),
    language: $("language"),
    prompt: $("prompt"),
    noiseSuppression: $("noise-suppression"),
    diarize: $("live-diarize"),
    copy: $("live-copy"),
    downloads: [...document.querySelectorAll("#live-actions [data-format]")],
    copied: $("live-copied"),
  };

  let session = null;
  let finals = []; // {start, end, text} of the last stream, for copying and downloads

  function setStatus(state, detail) {
    ui.status.dataset.state = state;
    ui.status.textContent = detail ? `${state}: ${detail}` : state;
    const active = state === "connecting" || state === "listening" || state === "finishing";
    ui.start.disabled = active;
    ui.stop.disabled = state !== "listening";
    ui.language.disabled = active;
    ui.prompt.disabled = active;
    ui.noiseSuppression.disabled = active;
    ui.diarize.disabled = active;
    const takeAway = !active && finals.length > 0;
    ui.copy.disabled = !takeAway;
    ui.downloads.forEach((button) => (button.disabled = !takeAway));
  }

  /** A line of the transcript: a final's text, skipped audio or an error, where it happened. */
  function addLine(kind, start, text, speaker) {
    const item = document.createElement("li");
    item.className = kind;
    item.append(...lineParts(start, text, speaker));
    ui.lines.append(item);
  }

  function showError(message) {
    addLine("error", null, message);
  }

  function showLevel(samples) {
    let sum = 0;
    for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
    const rms = Math.sqrt(sum / Math.max(1, samples.length)) / 32768;
    const db = 20 * Math.log10(Math.max(rms, 1e-6));
    const level = Math.min(1, Math.max(0, 1 - db / METER_FLOOR_DB));
    ui.level.value = Math.max(level, ui.level.value * METER_DECAY);
  }

  // The key goes to the WebSocket as its query: a browser cannot set headers on one.
  function streamUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const key = apiKey();
    const query = key ? `?token=${encodeURIComponent(key)}` : "";
    return `${scheme}//${location.host}/stream-audio${query}`;
  }

  function describeClose(event) {
    const reason = event.reason ? ` (${event.reason})` : "";
    switch (event.code) {
      case 1000: return ["closed", event.reason || ""];
      case 1001: return ["closed", `server shutting down${reason}`];
      case 1008: return ["closed", event.reason || "idle timeout"];
      case 1013: return ["error", event.reason || "too many streams, try again later"];
      case 1006: return ["error", "connection lost"];
      default: return ["error", `connection closed with code ${event.code}${reason}`];
    }
  }

  function openSocket(url) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      socket.binaryType = "arraybuffer";
      socket.onopen = () => {
        socket.onopen = socket.onclose = null;
        resolve(socket);
      };
      socket.onclose = (event) => {
        const [, detail] = describeClose(event);
        reject(new Error(`cannot connect to the gateway${detail ? `: ${detail}` : ""}`));
      };
    });
  }

  function toLittleEndianBytes(samples) {
    if (LITTLE_ENDIAN) return samples;
    const view = new DataView(new ArrayBuffer(samples.length * 2));
    samples.forEach((sample, i) => view.setInt16(i * 2, sample, true));
    return view.buffer;
  }

  class Session {
    constructor() {
      this.socket = null;
      this.context = null;
      this.stream = null;
      this.node = null;
      this.frame = new Int16Array(FRAME_SAMPLES);
      this.filled = 0;
      this.stopping = false;
      this.done = false;
      this.ended = false;
      this.onFlushed = null;
      this.doneTimer = null;
    }

    config() {
      const config = { type: "config", sample_rate: TARGET_RATE, encoding: "pcm_s16le", channels: 1 };
      const language = ui.language.value.trim();
      const prompt = ui.prompt.value.trim();
      if (language) config.language = language;
      if (prompt) config.prompt = prompt;
      if (ui.diarize.checked) config.diarize = true;
      return config;
    }

    async start() {
      setStatus("connecting");
      // Created during the click, so the browser lets it run without a further gesture.
      this.context = new AudioContext();
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: {
          channelCount: 1,
          echoCancellation: true,
          noiseSuppression: ui.noiseSuppression.checked,
        },
      });
      await this.context.audioWorklet.addModule("/static/pcm-worklet.js");
      this.node = new AudioWorkletNode(this.context, "pcm-worklet", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        channelCount: 1,
        channelCountMode: "explicit", // the graph mixes the microphone down to mono
        processorOptions: { targetRate: TARGET_RATE },
      });
      this.node.port.onmessage = (event) => this.onAudio(event.data);

      this.socket = await openSocket(streamUrl());
      if (this.ended) {
        this.socket.close(1000); // the page was left while connecting
        return;
      }
      this.socket.onmessage = (event) => this.onMessage(event);
      this.socket.onclose = (event) => this.onClose(event);
      this.socket.send(JSON.stringify(this.config()));

      // The node writes silence: linking it to the destination just keeps it rendering.
      this.context.createMediaStreamSource(this.stream).connect(this.node).connect(this.context.destination);
      if (this.context.state !== "running") await this.context.resume();
      setStatus("listening");
    }

    onAudio(data) {
      if (data instanceof Int16Array) {
        showLevel(data);
        let offset = 0;
        while (offset < data.length) {
          const count = Math.min(data.length - offset, FRAME_SAMPLES - this.filled);
          this.frame.set(data.subarray(offset, offset + count), this.filled);
          this.filled += count;
          offset += count;
          if (this.filled === FRAME_SAMPLES) this.sendFrame();
        }
      } else if (data && data.type === "flushed" && this.onFlushed) {
        this.onFlushed();
      }
    }

    sendFrame() {
      if (this.filled === 0) return;
      const samples = this.frame.slice(0, this.filled);
      this.filled = 0;
      if (this.socket && this.socket.readyState === WebSocket.OPEN && !this.done) {
        this.socket.send(toLittleEndianBytes(samples));
      }
    }

    onMessage(event) {
      if (typeof event.data !== "string") return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        showError(`unreadable message from the server: ${event.data.slice(0, 200)}`);
        return;
      }
      switch (message.type) {
        case "partial":
          ui.partial.textContent = message.text || "";
          break;
        case "final": {
          // No clearing of the partial here: the server follows a final with the new
          // partial whenever the uncommitted tail changed.
          const final = { start: message.start, end: message.end, text: message.text || "" };
          if (message.speaker) final.speaker = message.speaker; // with diarize in the config
          finals.push(final);
          addLine("final", final.start, final.text.trim(), final.speaker);
          break;
        }
        case "skipped": {
          const why = SKIP_REASONS[message.reason] || message.reason || "unknown reason";
          const seconds = (message.end - message.start).toFixed(1);
          addLine("skipped", message.start, `${seconds} s not transcribed: ${why}`);
          break;
        }
        case "error":
          showError(message.message || "unknown server error");
          break;
        case "done":
          this.done = true;
          ui.partial.textContent = "";
          this.socket.close(1000, "done");
          break;
        default:
          break; // newer message types are ignored
      }
    }

    onClose(event) {
      this.end();
      if (this.done) {
        setStatus("closed");
      } else {
        const [state, detail] = describeClose(event);
        setStatus(state, detail || (this.stopping ? "" : "by the server"));
      }
    }

    /** Stop capturing, send what is left and "stop", then wait for "done". */
    async stop() {
      if (this.stopping) return;
      this.stopping = true;
      setStatus("finishing");
      if (this.node) {
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, FLUSH_TIMEOUT_MS);
          this.onFlushed = () => {
            clearTimeout(timer);
            resolve();
          };
          this.node.port.postMessage({ type: "flush" });
        });
      }
      this.releaseAudio();
      this.sendFrame();
      if (this.socket && this.socket.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify({ type: "stop" }));
        this.doneTimer = setTimeout(() => {
          showError("the server did not finish in time");
          this.socket.close(1000, "no done");
        }, DONE_TIMEOUT_MS);
      }
    }

    releaseAudio() {
      if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
      if (this.node) {
        this.node.port.onmessage = null;
        this.node.disconnect();
      }
      if (this.context && this.context.state !== "closed") this.context.close().catch(() => {});
      this.stream = this.node = this.context = null;
      ui.level.value = 0;
    }

    /** Release everything; the socket is closed if still open. */
    end() {
      this.ended = true;
      clearTimeout(this.doneTimer);
      this.releaseAudio();
      if (this.socket && this.socket.readyState <= WebSocket.OPEN) this.socket.close(1000);
      if (session === this) session = null;
    }
  }

  ui.start.addEventListener("click", async () => {
    if (session) return;
    ui.lines.replaceChildren();
    ui.partial.textContent = "";
    ui.copied.textContent = "";
    finals = [];
    if (access.needed && !apiKey()) {
      setStatus("error", "this gateway needs an API key");
      access.ask("Enter an API key to stream the microphone.");
      return;
    }
    const current = (session = new Session());
    try {
      await current.start();
    } catch (error) {
      current.end();
      const name = error && error.name && error.name !== "Error" ? `${error.name}: ` : "";
      setStatus("error", `${name}${(error && error.message) || error}`);
      access.check(); // a refused key closes the socket before it opens: ask the API why
    }
  });

  ui.stop.addEventListener("click", () => {
    if (session) session.stop();
  });

  ui.copy.addEventListener("click", async () => {
    ui.copied.textContent = "";
    try {
      await copy(FORMATS.txt.write(finals));
      ui.copied.textContent = "Copied.";
    } catch (error) {
      ui.copied.textContent = `Not copied: ${error.message}`;
    }
  });

  for (const button of ui.downloads) {
    button.addEventListener("click", () => {
      const format = FORMATS[button.dataset.format];
      const stamp = new Date().toISOString().slice(0, 16).replace(":", "-");
      download(`live-${stamp}.${button.dataset.format}`, format.write(finals), format.type);
    });
  }

  // Enter in a field must not reload the page.
  $("live-settings").addEventListener("submit", (event) => event.preventDefault());

  window.addEventListener("pagehide", () => {
    if (session) session.end();
  });

  setStatus("idle");
}
