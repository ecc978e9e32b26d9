// Server-sent events read from a fetch response body (EventSource cannot POST).
// Follows the WHATWG event-stream format: "event:", "data:" (joined with newlines),
// "id:", comment lines starting with ":", and a blank line ending each message.
//
// Each read is scanned once for line ends: the start of a line that has not ended yet is
// kept as pieces and joined when it ends, so a message of megabytes that arrives in many
// reads costs its length, not its length times the number of reads.

/**
 * Yield {event, data, id} for each message of an event-stream response.
 * @param {Response} response a fetch response whose body is text/event-stream
 */
export async function* readEventStream(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const lines = new LineSplitter();
  let message = fresh();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const line of lines.push(value)) {
        if (line === "") {
          if (message.data.length) yield finish(message);
          message = fresh();
        } else if (!line.startsWith(":")) {
          field(message, line);
        }
      }
    }
    const rest = lines.end();
    if (rest) field(message, rest);
    if (message.data.length) yield finish(message);
  } finally {
    reader.releaseLock();
  }
}

const LINE_END = /\r\n|\n|\r/g;

/** Lines from text that arrives in pieces; "\r\n", "\n" and "\r" each end a line, and a
 *  "\r\n" split between two pieces ends one line, not two. */
export class LineSplitter {
  constructor() {
    this.pieces = []; // the start of the line that has not ended yet
    this.afterCR = false; // the last piece ended with "\r": a "\n" first in the next one is its pair
  }

  /** The lines that `text` completes, in order. */
  push(text) {
    const lines = [];
    let start = this.afterCR && text.startsWith("\n") ? 1 : 0;
    this.afterCR = false;
    LINE_END.lastIndex = start;
    for (let match; (match = LINE_END.exec(text)); ) {
      this.pieces.push(text.slice(start, match.index));
      lines.push(this.pieces.length === 1 ? this.pieces[0] : this.pieces.join(""));
      this.pieces = [];
      start = match.index + match[0].length;
      if (start === text.length && match[0] === "\r") this.afterCR = true;
    }
    if (start < text.length) this.pieces.push(text.slice(start));
    return lines;
  }

  /** What is left once the text has ended: a last line without its line end. */
  end() {
    const rest = this.pieces.join("");
    this.pieces = [];
    return rest;
  }
}

function fresh() {
  return { event: "message", data: [], id: null };
}

function field(message, line) {
  const colon = line.indexOf(":");
  const name = colon < 0 ? line : line.slice(0, colon);
  let value = colon < 0 ? "" : line.slice(colon + 1);
  if (value.startsWith(" ")) value = value.slice(1);
  if (name === "event") message.event = value;
  else if (name === "data") message.data.push(value);
  else if (name === "id") message.id = value;
}

function finish(message) {
  return { event: message.event, data: message.data.join("\n"), id: message.id };
}
