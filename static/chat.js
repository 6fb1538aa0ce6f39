// The Chat page: streams an answer from POST /api/v1/chat/completions (OpenAI chunks over
// SSE) with the session and its CSRF token, and shows the Island that served it, the
// time to first token and the tokens per second. While the job waits for an Island, the
// answer says why (the chunks' `status` extension); the picker marks the Cargos no online
// Island can run.
(() => {
  const root = document.querySelector("[data-chat]");
  const form = root && root.querySelector("[data-chat-form]");
  if (!form) return;
  const $ = (selector) => root.querySelector(selector);
  const log = $("[data-chat-log]");
  const errorBox = $("[data-chat-error]");
  const send = $("[data-chat-send]");
  const prompt = $("[data-chat-prompt]");
  const model = $("[data-chat-model]");
  const availability = $("[data-chat-availability]");
  let history = [];

  // The note under the picker, for a Cargo that no online Island can run.
  function showAvailability() {
    const option = model.selectedOptions[0];
    availability.hidden = !(option && "unavailable" in option.dataset);
  }
  model.addEventListener("change", showAvailability);
  showAvailability();

  function limit(seconds) {
    if (typeof seconds !== "number") return "";
    const minutes = Math.round(seconds / 60);
    const span = seconds % 60 ? `${seconds} s` : `${minutes} minute${minutes === 1 ? "" : "s"}`;
    return ` It gives up after ${span} in the queue.`;
  }

  // Why the job waits, in its answer's bubble until the wait ends; none: it ended.
  function waitingNote(answer, status) {
    const turn = answer.closest(".chat-turn");
    let note = turn.querySelector("[data-chat-waiting]");
    if (!status) {
      if (note) note.remove();
      return;
    }
    if (!note) {
      note = document.createElement("span");
      note.className = "chat-waiting";
      note.dataset.chatWaiting = "";
      note.setAttribute("role", "status");
      answer.before(note);
    }
    note.textContent = `Waiting for an Island: ${status.message || "queued"}.${limit(status.timeout_seconds)}`;
  }

  function turn(who, text) {
    const item = document.createElement("div");
    item.className = `chat-turn ${who}`;
    item.dataset.turn = who;
    const label = document.createElement("span");
    label.className = "who";
    label.textContent = who === "user" ? "You" : "Assistant";
    const body = document.createElement("span");
    body.dataset.content = "";
    body.textContent = text;
    item.append(label, body);
    log.append(item);
    return body;
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function stat(name, value) {
    $(`[data-stat-${name}]`).textContent = value;
  }

  async function ask(answer) {
    $("[data-chat-stats]").hidden = false;
    ["island", "ttft", "rate", "tokens"].forEach((name) => stat(name, "…"));
    const started = performance.now();
    let first = null;
    let chunks = 0;
    let usage = null;
    const response = await fetch(root.dataset.endpoint, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value,
      },
      body: JSON.stringify({
        model: model.value,
        messages: history,
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
    }
    for await (const data of window.sseEvents(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.status) waitingNote(answer, chunk.status.state === "queued" ? chunk.status : null);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      if (chunk.island) stat("island", chunk.island.name || chunk.island.id);
      for (const choice of chunk.choices || []) {
        const content = choice.delta && choice.delta.content;
        if (!content) continue;
        if (first === null) {
          waitingNote(answer, null);
          first = performance.now();
          stat("ttft", `${Math.round(first - started)} ms`);
        }
        chunks += 1;
        answer.textContent += content;
      }
    }
    const seconds = first === null ? 0 : (performance.now() - first) / 1000;
    const tokens = usage ? usage.completion_tokens : chunks;
    stat("tokens", String(tokens));
    stat("rate", seconds > 0 ? (tokens / seconds).toFixed(1) : "-");
    if (first === null) stat("ttft", "-");
    history.push({ role: "assistant", content: answer.textContent });
    answer.closest(".chat-turn").dataset.done = "";
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text) return;
    prompt.value = "";
    showError("");
    send.disabled = true;
    history.push({ role: "user", content: text });
    turn("user", text);
    const answer = turn("assistant", "");
    try {
      await ask(answer);
    } catch (error) {
      history.pop();
      waitingNote(answer, null);
      if (!answer.textContent) {
        answer.closest(".chat-turn").remove(); // no empty bubble, nor its stats
        $("[data-chat-stats]").hidden = true;
      }
      showError(error.message);
    } finally {
      send.disabled = false;
      prompt.focus();
    }
  });

  $("[data-chat-reset]").addEventListener("click", () => {
    history = [];
    log.replaceChildren();
    showError("");
    $("[data-chat-stats]").hidden = true;
  });
})();
