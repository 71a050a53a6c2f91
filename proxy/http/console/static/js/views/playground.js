// Playground: streams a chat completion through the gateway (fetch + ReadableStream over SSE) with the
// chosen alias, as the key the session is bound to; shows tokens, cost and cache status when done. The
// model's output is appended as text nodes: markup in it is shown, never run.
import { ApiError, describe, get, headers, qs } from "../api.js";
import { clear, field, h, num, usd } from "../dom.js";

async function costOf(requestId) {
  // a stream's cost is known once the call is metered: read it from the caller's recent calls
  for (let i = 0; i < 5; i++) {
    try {
      const me = await get(`/ui/api/me/usage${qs({ limit: 20 })}`);
      const row = (me.recent || []).find((r) => r.request_id === requestId);
      if (row) return row;
    } catch {
      return null;
    }
    await new Promise((res) => setTimeout(res, 150 * (i + 1)));
  }
  return null;
}

function* events(buffer) {
  // complete SSE events in `buffer.text`; the incomplete tail stays for the next chunk
  let at;
  while ((at = buffer.text.search(/\r?\n\r?\n/)) >= 0) {
    const raw = buffer.text.slice(0, at);
    buffer.text = buffer.text.slice(at).replace(/^\r?\n\r?\n/, "");
    const data = raw.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
    if (data) yield data;
  }
}

export async function render() {
  const models = await get("/v1/models");
  const ids = (models.data || []).map((m) => m.id).filter((id) => !id.includes("*"));
  const model = h("select", { name: "model" }, ids.map((id) => h("option", { value: id }, id)));
  const message = h("textarea", { name: "message", rows: 4, required: true });
  const send = h("button", { type: "submit" }, "Send");
  const alert = h("div", { role: "alert" });
  const output = h("div", { class: "response", role: "region", "aria-label": "Response", "aria-live": "polite", "aria-busy": "false" });
  const stats = h("p", { class: "stats muted", role: "status" });
  const form = h("form", { class: "panel" }, field("Model", model), field("Message", message), h("p", {}, send));

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!message.value.trim()) return;
    clear(alert); clear(output); clear(stats);
    send.disabled = true;
    output.setAttribute("aria-busy", "true");
    const started = performance.now();
    let usage = null;
    try {
      const r = await fetch("/v1/chat/completions", {
        // no `cache` option: "no-store" would make the browser send Cache-Control: no-cache, which skips
        // the gateway's response cache
        method: "POST", credentials: "same-origin",
        headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
        body: JSON.stringify({ model: model.value, stream: true, stream_options: { include_usage: true },
          messages: [{ role: "user", content: message.value }] }),
      });
      if (!r.ok) {
        let body = null;
        try { body = await r.json(); } catch { body = null; }
        throw new ApiError(r.status, body, r.headers);
      }
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      const buffer = { text: "" };
      let done = false;
      while (!done) {
        const chunk = await reader.read();
        if (chunk.done) break;
        buffer.text += chunk.value;
        for (const data of events(buffer)) {
          if (data === "[DONE]") { done = true; break; }
          const obj = JSON.parse(data);
          if (obj.error) throw new ApiError(obj.error.status || 502, obj, null);
          const text = obj.choices?.[0]?.delta?.content;
          if (text) output.append(text);
          if (obj.usage) usage = obj.usage;
        }
      }
      const seconds = ((performance.now() - started) / 1000).toFixed(2);
      const cache = r.headers.get("x-gateway-cache");
      const requestId = r.headers.get("x-request-id");
      const parts = [`Done in ${seconds} s`, `provider ${r.headers.get("x-gateway-provider") || "—"}`];
      if (usage) parts.push(`tokens: ${num(usage.prompt_tokens)} in, ${num(usage.completion_tokens)} out, ${num(usage.total_tokens)} total`);
      if (cache) parts.push(cache === "hit" ? "cache hit" : `cache ${cache}`);
      stats.append(parts.join(" · "));
      const row = requestId ? await costOf(requestId) : null;
      stats.append(row ? ` · cost ${usd(row.cost_usd)}` : " · cost: see Usage");
    } catch (e) {
      alert.append(h("p", { class: "alert" }, describe(e)));
    } finally {
      send.disabled = false;
      output.setAttribute("aria-busy", "false");
    }
  });
  const note = ids.length ? null : h("p", { class: "alert" }, "No model is available to your key.");
  return [h("h1", {}, "Playground"), note, form, alert, h("h2", {}, "Response"), output, stats];
}
