// Transcripts in the page: times for people and for subtitles, the formats a transcript is
// taken away in, and the clipboard and download helpers both tabs use.
//
// A segment is `{start, end, text, speaker?}`, times in seconds: a file's segments as the
// gateway answers them, or a live stream's finals. The subtitles are written as the gateway's
// own `response_format=srt|vtt` writes them (gateway/server/formats.py), speakers included.

/** `m:ss` (or `h:mm:ss`) for people. */
export function clock(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const secs = String(whole % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${secs}` : `${minutes}:${secs}`;
}

/** A `<time>` element showing `clock(seconds)`, the exact time in its machine-readable value. */
function timeElement(seconds) {
  const element = document.createElement("time");
  element.dateTime = `PT${Math.max(0, seconds).toFixed(3)}S`;
  element.textContent = clock(seconds);
  return element;
}

/** What a line of a transcript shows: its start time, its speaker when known, its text
 * (in `.text`). `start` null: no time (an error). */
export function lineParts(start, text, speaker) {
  const parts = [];
  if (start !== null) parts.push(timeElement(start), " ");
  if (speaker) {
    const badge = document.createElement("span");
    badge.className = "speaker";
    badge.textContent = speaker;
    parts.push(badge, " ");
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  parts.push(body);
  return parts;
}

/** `HH:MM:SS<marker>mmm`, as SubRip (`,`) and WebVTT (`.`) want it. */
export function timestamp(seconds, marker) {
  let ms = Math.round(Math.max(0, seconds) * 1000);
  const pad = (value, width) => String(value).padStart(width, "0");
  const hours = Math.floor(ms / 3600000);
  ms -= hours * 3600000;
  const minutes = Math.floor(ms / 60000);
  ms -= minutes * 60000;
  const secs = Math.floor(ms / 1000);
  ms -= secs * 1000;
  return `${pad(hours, 2)}:${pad(minutes, 2)}:${pad(secs, 2)}${marker}${pad(ms, 3)}`;
}

function cue(segment, marker, tag) {
  const times = `${timestamp(segment.start, marker)} --> ${timestamp(segment.end, marker)}`;
  return `${times}\n${tag}${segment.text.trim()}\n\n`;
}

const spoken = (segments) => segments.filter((segment) => segment.text.trim());

export function toSrt(segments) {
  return spoken(segments)
    .map((segment, index) => `${index + 1}\n${cue(segment, ",", segment.speaker ? `[${segment.speaker}] ` : "")}`)
    .join("");
}

export function toVtt(segments) {
  return `WEBVTT\n\n${spoken(segments)
    .map((segment) => cue(segment, ".", segment.speaker ? `<v ${segment.speaker}>` : ""))
    .join("")}`;
}

/** Plain text: the segments' text joined (Whisper's leading spaces keep the words apart);
 * with speakers, a line per change of speaker. */
export function toText(segments) {
  if (!segments.some((segment) => segment.speaker)) {
    return `${segments.map((segment) => segment.text).join("").trim()}\n`;
  }
  const lines = [];
  for (const segment of spoken(segments)) {
    const last = lines[lines.length - 1];
    if (last && last.speaker === segment.speaker) last.text += ` ${segment.text.trim()}`;
    else lines.push({ speaker: segment.speaker, text: segment.text.trim() });
  }
  return lines.map((line) => `${line.speaker}: ${line.text}\n`).join("");
}

export const FORMATS = {
  txt: { type: "text/plain", write: toText },
  srt: { type: "application/x-subrip", write: toSrt },
  vtt: { type: "text/vtt", write: toVtt },
};

/** Offer `text` as a file called `name` (the browser's download). */
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type: `${type};charset=utf-8` }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** Put `text` on the clipboard; the async clipboard needs a secure context (https or
 * localhost), so a page opened over plain http elsewhere falls back to a selection. */
export async function copy(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  if (!copied) throw new Error("the browser refused to copy");
}
