// Server-sent events read from a fetch response body (EventSource cannot POST).
// Follows the WHATWG event-stream format: "event:", "data:" (joined with newlines),
// "id:", comment lines starting with ":", and a blank line ending each message.

/**
 * Yield {event, data, id} for each message of an event-stream response.
 * @param {Response} response a fetch response whose body is text/event-stream
 */
export async function* readEventStream(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let message = fresh();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const lines = buffer.split(/\r\n|\n|\r(?!$)/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (message.data.length) yield finish(message);
          message = fresh();
        } else if (!line.startsWith(":")) {
          field(message, line);
        }
      }
    }
    if (buffer) field(message, buffer);
    if (message.data.length) yield finish(message);
  } finally {
    reader.releaseLock();
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
