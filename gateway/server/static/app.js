// The live page: microphone -> AudioWorklet (16 kHz PCM16) -> WebSocket /stream-audio -> transcript.
//
// States shown in #status (also in its data-state attribute):
//   idle -> connecting -> listening -> finishing -> closed
// and "error" (with the reason) when the microphone, the connection or the server fails.
"use strict";

(() => {
  const TARGET_RATE = 16000; // what the page sends: PCM16 mono at 16 kHz
  const FRAME_SAMPLES = TARGET_RATE / 10; // 100 ms per WebSocket frame (3200 bytes)
  const FLUSH_TIMEOUT_MS = 1000; // for the worklet to hand over its last samples
  const DONE_TIMEOUT_MS = 60000; // for the server's "done" after "stop"
  const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

  const $ = (id) => document.getElementById(id);
  const ui = {
    start: $("start"),
    stop: $("stop"),
    status: $("status"),
    final: $("final"),
    partial: $("partial"),
    errors: $("errors"),
    language: $("language"),
    prompt: $("prompt"),
    noiseSuppression: $("noise-suppression"),
  };

  let session = null;

  function setStatus(state, detail) {
    ui.status.dataset.state = state;
    ui.status.textContent = detail ? `${state}: ${detail}` : state;
    const active = state === "connecting" || state === "listening" || state === "finishing";
    ui.start.disabled = active;
    ui.stop.disabled = state !== "listening";
    ui.language.disabled = active;
    ui.prompt.disabled = active;
    ui.noiseSuppression.disabled = active;
  }

  function showError(message) {
    const item = document.createElement("li");
    item.textContent = message;
    ui.errors.append(item);
  }

  // With API keys on, open the page as /?token=KEY: the key goes on to the WebSocket as its
  // query (a browser cannot set headers on a WebSocket).
  function streamUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const token = new URLSearchParams(location.search).get("token");
    const query = token ? `?token=${encodeURIComponent(token)}` : "";
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
        reject(new Error(`cannot connect to ${url}${detail ? `: ${detail}` : ""}`));
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
          const text = message.text || "";
          ui.final.textContent += ui.final.textContent ? text : text.trimStart();
          // No clearing of the partial here: the server follows a final with the new
          // partial whenever the uncommitted tail changed.
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
    ui.final.textContent = "";
    ui.partial.textContent = "";
    ui.errors.replaceChildren();
    const current = (session = new Session());
    try {
      await current.start();
    } catch (error) {
      current.end();
      const name = error && error.name && error.name !== "Error" ? `${error.name}: ` : "";
      setStatus("error", `${name}${(error && error.message) || error}`);
    }
  });

  ui.stop.addEventListener("click", () => {
    if (session) session.stop();
  });

  // Enter in a field must not reload the page.
  $("settings").addEventListener("submit", (event) => event.preventDefault());

  window.addEventListener("pagehide", () => {
    if (session) session.end();
  });

  setStatus("idle");
})();
