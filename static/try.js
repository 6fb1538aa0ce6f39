// The "Try a Cargo" page: a form made from the picked Cargo's input schema (text areas,
// numbers, selects, a file drop for base64 fields such as images), then the job through
// POST /api/v1/jobs and its stream (GET /api/v1/jobs/:id/stream) with the session and
// its CSRF token: status and output live, and for OCR the lines in a table and their
// boxes drawn over the image.
(() => {
  const root = document.querySelector("[data-try]");
  const form = root && root.querySelector("[data-try-form]");
  if (!form) return;
  const $ = (selector) => root.querySelector(selector);
  const schemas = JSON.parse(document.getElementById("try-schemas").textContent);
  const picker = $("[data-try-cargo]");
  const fields = $("[data-try-fields]");
  const output = $("[data-try-output]");
  const statusLine = $("[data-try-status]");
  const errorBox = $("[data-try-error]");
  const picture = $("[data-try-picture]");
  const lines = $("[data-try-lines]");
  const csrf = () => form.querySelector("[name=csrfmiddlewaretoken]").value;

  function element(tag, attributes = {}, text = "") {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text) node.textContent = text;
    return node;
  }

  function fileDrop(id, name, spec) {
    const zone = element("div", { class: "try-drop", "data-try-drop": name });
    const accept = String(spec.contentMediaType || "").startsWith("image/") ? "image/png,image/jpeg,image/webp" : "";
    const input = element("input", { type: "file", id, "data-field": name, "data-kind": "file", ...(accept ? { accept } : {}) });
    const hint = element("p", { class: "help" }, "Drop a file here, or choose one.");
    zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      input.files = event.dataTransfer.files;
      input.dispatchEvent(new Event("change"));
    });
    input.addEventListener("change", () => {
      hint.textContent = input.files.length ? `${input.files[0].name} (${input.files[0].size} bytes)` : "Drop a file here, or choose one.";
    });
    zone.append(input, hint);
    return zone;
  }

  function control(id, name, spec) {
    if (spec.contentEncoding === "base64") return fileDrop(id, name, spec);
    if (Array.isArray(spec.enum)) {
      const select = element("select", { id, "data-field": name, "data-kind": "text" });
      spec.enum.forEach((value) => select.append(element("option", { value }, String(value))));
      return select;
    }
    if (spec.type === "integer" || spec.type === "number") {
      const input = element("input", { type: "number", id, "data-field": name, "data-kind": spec.type });
      if (spec.type === "integer") input.step = "1";
      if (spec.minimum !== undefined) input.min = spec.minimum;
      if (spec.maximum !== undefined) input.max = spec.maximum;
      return input;
    }
    if (spec.type === "boolean") return element("input", { type: "checkbox", id, "data-field": name, "data-kind": "boolean" });
    if (spec.type === "string" && spec.maxLength && spec.maxLength <= 200) {
      return element("input", { type: "text", id, "data-field": name, "data-kind": "text" });
    }
    const kind = spec.type === "string" || !spec.type ? "text" : "json";
    return element("textarea", { id, "data-field": name, "data-kind": kind, ...(kind === "json" ? { placeholder: "JSON" } : {}) });
  }

  function buildForm() {
    const schema = schemas[picker.value] || {};
    const required = new Set(schema.required || []);
    fields.replaceChildren();
    for (const [name, spec] of Object.entries(schema.properties || {})) {
      const id = `try-field-${name}`;
      const label = element("label", { for: id }, required.has(name) ? `${name} (required)` : name);
      const node = control(id, name, spec || {});
      const input = node.matches("[data-field]") ? node : node.querySelector("[data-field]");
      if (required.has(name)) input.required = true;
      fields.append(label, node);
      if (spec && spec.description) fields.append(element("p", { class: "help" }, spec.description));
    }
  }
  picker.addEventListener("change", buildForm);
  buildForm();

  function readBase64(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
      reader.onerror = () => reject(new Error(`Cannot read ${file.name}`));
      reader.readAsDataURL(file);
    });
  }

  async function jobInput() {
    const input = {};
    for (const node of fields.querySelectorAll("[data-field]")) {
      const name = node.dataset.field;
      const kind = node.dataset.kind;
      if (kind === "file") {
        if (node.files.length) input[name] = await readBase64(node.files[0]);
      } else if (kind === "boolean") {
        input[name] = node.checked;
      } else if (node.value === "") {
        continue;
      } else if (kind === "integer" || kind === "number") {
        input[name] = Number(node.value);
      } else if (kind === "json") {
        input[name] = JSON.parse(node.value);
      } else {
        input[name] = node.value;
      }
    }
    return input;
  }

  async function api(method, url, body) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((data.error && data.error.message) || `HTTP ${response.status}`);
    return data.data;
  }

  function showLines(job, image) {
    const result = job.result || {};
    if (!Array.isArray(result.lines)) return;
    const body = lines.querySelector("tbody");
    body.replaceChildren();
    for (const line of result.lines) {
      const row = element("tr");
      row.append(element("td", {}, line.text), element("td", {}, line.confidence.toFixed(3)),
        element("td", {}, line.box.map((p) => p.join(",")).join(" ")));
      body.append(row);
    }
    lines.hidden = false;
    if (!image) return;
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("viewBox", `0 0 ${result.width} ${result.height}`);
    svg.setAttribute("preserveAspectRatio", "none");
    for (const line of result.lines) {
      const polygon = document.createElementNS(svgNS, "polygon");
      polygon.setAttribute("points", line.box.map((p) => p.join(",")).join(" "));
      polygon.append(Object.assign(document.createElementNS(svgNS, "title"), { textContent: line.text }));
      svg.append(polygon);
    }
    const img = element("img", { alt: "The image sent, with the boxes of the lines read" });
    img.src = URL.createObjectURL(image);
    picture.replaceChildren(img, svg);
    picture.hidden = false;
  }

  async function run() {
    const fileInput = fields.querySelector("[data-kind=file]");
    const image = fileInput && fileInput.files.length && fileInput.accept ? fileInput.files[0] : null;
    const job = await api("POST", "/api/v1/jobs", { workload: picker.value, input: await jobInput() });
    statusLine.textContent = `Job ${job.id}: ${job.status}`;
    output.hidden = false;
    const response = await fetch(`/api/v1/jobs/${job.id}/stream`, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`Cannot follow the job (HTTP ${response.status})`);
    for await (const data of window.sseEvents(response)) {
      const event = JSON.parse(data);
      if (event.type === "status") {
        const why = event.state === "queued" && event.message ? `: waiting for an Island, ${event.message}` : "";
        statusLine.textContent = `Job ${job.id}: ${event.state}${why}`;
      } else if (event.type === "token") {
        output.textContent += event.content;
      } else if (event.type === "progress") {
        statusLine.textContent = `Job ${job.id}: step ${event.step} of ${event.total}`;
      } else if (event.type === "error") {
        throw new Error(`The job failed: ${event.error}`);
      } else if (event.type === "done") {
        break;
      }
    }
    const finished = await api("GET", `/api/v1/jobs/${job.id}`);
    statusLine.textContent = `Job ${job.id}: ${finished.status}` +
      (finished.usage && finished.usage.milliseconds ? ` in ${finished.usage.milliseconds} ms on the Island` : "");
    if (!output.textContent) output.textContent = finished.output || "(no output)";
    output.dataset.done = "";
    showLines(finished, image);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("[data-try-run]");
    button.disabled = true;
    errorBox.hidden = true;
    output.textContent = "";
    delete output.dataset.done;
    picture.hidden = true;
    lines.hidden = true;
    try {
      await run();
    } catch (error) {
      errorBox.textContent = error.message;
      errorBox.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
})();
