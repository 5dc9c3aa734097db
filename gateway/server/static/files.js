// The files tab: a picked or dropped file -> POST /transcribe?stream=true -> a transcript that
// grows as the gateway's windows finish, then its segments, each playing its part of the file.
//
// The gateway's own route, not OpenAI's: its `progress` events say how far into the audio it
// is (`processed` of `duration` seconds), which the progress bar shows, and its `done` event
// carries the segments with their times (and speakers). States in #file-status (and its
// data-state): idle -> ready -> sending -> transcribing -> done, or cancelled, or error.
// Cancel aborts the request; the gateway stops the file's work when its client hangs up.

import { ApiError, authHeaders } from "./access.js";
import { events } from "./sse.js";
import { FORMATS, clock, copy, download, lineParts } from "./transcript.js";

const TICK_MS = 500; // how often the elapsed time and the estimate are redrawn

const $ = (id) => document.getElementById(id);

/** The server's words as a sentence: "the upload is larger" -> "The upload is larger." */
const sentence = (text) => `${text.charAt(0).toUpperCase()}${text.slice(1)}${/[.!?]$/.test(text) ? "" : "."}`;

/** Wire up the files tab; `access.ask(message)` asks the user for an API key. */
export function setupFiles(access) {
  const ui = {
    panel: $("files"),
    form: $("file-form"),
    input: $("file-input"),
    dropzone: $("dropzone"),
    chosen: $("file-chosen"),
    language: $("file-language"),
    prompt: $("file-prompt"),
    diarize: $("file-diarize"),
    format: $("file-format"),
    transcribe: $("transcribe"),
    cancel: $("cancel"),
    status: $("file-status"),
    progress: $("file-progress"),
    progressText: $("file-progress-text"),
    error: $("file-error"),
    player: $("player"),
    text: $("file-text"),
    segments: $("segments"),
    copy: $("file-copy"),
    download: $("file-download"),
    copied: $("file-copied"),
  };

  let file = null;
  let media = null; // the <audio> or <video> playing the file
  let stopAt = null; // where a segment's playback ends
  let run = null; // the transcription under way: {controller, started, transcribing, ...}
  let transcript = null; // the gateway's JSON once done

  function setStatus(state, detail) {
    ui.status.dataset.state = state;
    ui.status.textContent = detail ? `${state}: ${detail}` : state;
    const running = state === "sending" || state === "transcribing";
    ui.input.disabled = running;
    [ui.language, ui.prompt, ui.diarize].forEach((control) => (control.disabled = running));
    ui.transcribe.disabled = running || !file;
    ui.cancel.disabled = !running;
    ui.copy.disabled = ui.download.disabled = !transcript;
  }

  function showError(error) {
    const headline = document.createElement("strong");
    headline.textContent = error.headline || "Something went wrong.";
    const parts = [headline];
    if (error.message) parts.push(" ", sentence(error.message));
    if (error.advice) parts.push(` ${error.advice}`);
    if (error.requestId) {
      const id = document.createElement("small");
      id.textContent = ` (request ${error.requestId})`;
      parts.push(id);
    }
    ui.error.replaceChildren(...parts);
    ui.error.hidden = false;
  }

  function clearResult() {
    transcript = null;
    ui.error.hidden = true;
    ui.error.replaceChildren();
    ui.text.textContent = "";
    ui.text.hidden = false;
    ui.segments.replaceChildren();
    ui.copied.textContent = "";
    ui.progress.value = 0;
    ui.progressText.textContent = "";
  }

  // --- the file and its player ------------------------------------------------------------

  function choose(chosen) {
    if (!chosen || run) return;
    file = chosen;
    const megabytes = (file.size / 1024 / 1024).toFixed(1);
    ui.chosen.textContent = `${file.name} (${megabytes} MB)`;
    if (media) URL.revokeObjectURL(media.src);
    media = document.createElement(file.type.startsWith("video/") ? "video" : "audio");
    media.controls = true;
    media.preload = "metadata";
    media.src = URL.createObjectURL(file);
    media.addEventListener("timeupdate", () => {
      if (stopAt !== null && media.currentTime >= stopAt) {
        media.pause();
        stopAt = null;
      }
    });
    media.addEventListener("error", () => {
      const note = document.createElement("p");
      note.className = "hint";
      note.textContent = "This browser cannot play this file; its transcript is not affected.";
      ui.player.replaceChildren(note);
    });
    ui.player.replaceChildren(media);
    clearResult();
    setStatus("ready");
  }

  function play(segment, button) {
    if (!media) return;
    ui.segments.querySelectorAll("[aria-current]").forEach((item) => item.removeAttribute("aria-current"));
    button.setAttribute("aria-current", "true");
    stopAt = segment.end;
    media.currentTime = segment.start;
    media.play().catch(() => {}); // an unplayable file says so through its error event
  }

  // --- progress ---------------------------------------------------------------------------

  function showProgress() {
    if (!run) return;
    const now = performance.now();
    const elapsed = `${clock((now - run.started) / 1000)} elapsed`;
    if (run.duration === null) {
      ui.progressText.textContent = `${run.transcribing ? "Transcribing" : "Sending and decoding"} · ${elapsed}`;
      return;
    }
    let left = "estimating what remains";
    if (run.processed >= run.duration) left = "finishing";
    else if (run.remaining !== null) {
      left = `about ${clock(Math.max(0, run.remaining - (now - run.reportedAt) / 1000))} left`;
    }
    const audio = `${run.processed.toFixed(1)} s of ${run.duration.toFixed(1)} s of audio`;
    ui.progressText.textContent = `${audio} · ${elapsed} · ${left}`;
  }

  function onProgress(event) {
    const now = performance.now();
    run.duration = event.duration;
    run.processed = event.processed;
    run.reportedAt = now;
    // The pace so far (since the gateway began to answer) carried over the audio still to do
    const spent = (now - run.transcribing) / 1000;
    run.remaining = event.processed > 0 ? (spent * (event.duration - event.processed)) / event.processed : null;
    ui.progress.max = Math.max(event.duration, 0.001);
    ui.progress.value = event.processed;
    ui.text.textContent += ui.text.textContent ? event.delta : event.delta.trimStart();
    showProgress();
  }

  // --- the transcription ------------------------------------------------------------------

  function request() {
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("stream", "true");
    const language = ui.language.value.trim();
    const prompt = ui.prompt.value.trim();
    if (language) form.append("language", language);
    if (prompt) form.append("prompt", prompt);
    if (ui.diarize.checked) form.append("diarize", "true");
    return form;
  }

  async function transcribe() {
    clearResult();
    const controller = new AbortController();
    run = { controller, started: performance.now(), transcribing: null, duration: null, processed: 0, remaining: null };
    const ticker = setInterval(showProgress, TICK_MS);
    ui.progress.removeAttribute("value"); // indeterminate until the first report
    setStatus("sending");
    showProgress();
    try {
      const response = await fetch("/transcribe", {
        method: "POST",
        body: request(),
        headers: authHeaders(),
        signal: controller.signal,
      });
      if (!response.ok) throw await ApiError.of(response);
      run.transcribing = performance.now();
      setStatus("transcribing");
      for await (const event of events(response.body)) {
        if (event.type === "progress") onProgress(event);
        else if (event.type === "done") transcript = event.transcript;
        else if (event.type === "error") throw ApiError.from(event);
      }
      if (!transcript) throw new ApiError({ message: "the answer ended before the transcript" });
      showTranscript();
      run = null;
      setStatus("done");
    } catch (error) {
      const cancelled = controller.signal.aborted;
      run = null;
      ui.progress.value = 0;
      if (cancelled) {
        setStatus("cancelled");
        ui.progressText.textContent = "Cancelled: the gateway has stopped working on the file.";
      } else {
        fail(error);
      }
    } finally {
      clearInterval(ticker);
    }
  }

  function fail(error) {
    if (!(error instanceof ApiError)) {
      const headline = "The gateway could not be reached, or the connection broke.";
      error = new ApiError({ message: `${error.message || error}`, headline });
    }
    showError(error);
    setStatus("error", error.code || "");
    ui.progressText.textContent = "";
    if (error.code === "invalid_api_key") access.check();
  }

  function showTranscript() {
    ui.progress.max = 1;
    ui.progress.value = 1;
    ui.progressText.textContent = `${transcript.duration.toFixed(1)} s of audio in ${clock((performance.now() - run.started) / 1000)}`;
    ui.text.hidden = true;
    ui.segments.replaceChildren(
      ...transcript.segments.map((segment) => {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "segment";
        button.append(...lineParts(segment.start, segment.text.trim(), segment.speaker));
        button.addEventListener("click", () => play(segment, button));
        const item = document.createElement("li");
        item.append(button);
        return item;
      }),
    );
  }

  // --- taking the result away -------------------------------------------------------------

  function output() {
    const name = ui.format.value;
    if (name === "json") return { text: `${JSON.stringify(transcript, null, 2)}\n`, type: "application/json" };
    return { text: FORMATS[name].write(transcript.segments), type: FORMATS[name].type };
  }

  function showFormat() {
    ui.download.textContent = `Download .${ui.format.value}`;
  }

  ui.copy.addEventListener("click", async () => {
    ui.copied.textContent = "";
    try {
      await copy(output().text);
      ui.copied.textContent = "Copied.";
    } catch (error) {
      ui.copied.textContent = `Not copied: ${error.message}`;
    }
  });

  ui.download.addEventListener("click", () => {
    const { text, type } = output();
    const stem = file.name.replace(/\.[^.]*$/, "") || "transcript";
    download(`${stem}.${ui.format.value}`, text, type);
  });

  ui.format.addEventListener("change", showFormat);

  // --- picking and dropping ---------------------------------------------------------------

  ui.input.addEventListener("change", () => choose(ui.input.files[0]));

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (file && !run) transcribe();
  });

  ui.cancel.addEventListener("click", () => {
    if (run) run.controller.abort();
  });

  const carriesFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
  ui.panel.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    ui.dropzone.classList.toggle("dragging", !run);
    event.dataTransfer.dropEffect = run ? "none" : "copy";
  });
  ui.panel.addEventListener("dragleave", (event) => {
    if (!ui.panel.contains(event.relatedTarget)) ui.dropzone.classList.remove("dragging");
  });
  ui.panel.addEventListener("drop", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    ui.dropzone.classList.remove("dragging");
    if (run || event.dataTransfer.files.length === 0) return;
    ui.input.files = event.dataTransfer.files;
    choose(event.dataTransfer.files[0]);
  });
  // A file dropped beside the drop zone must not make the browser leave the page to open it.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => {
      if (carriesFiles(event)) event.preventDefault();
    });
  }

  showFormat();
  setStatus("idle");
}
