// Video jobs: choose a video → POST v1/jobs → upload with the presigned form → poll v1/jobs/{id} →
// one small chart per tracked person (inline SVG, emotion probabilities over time) when it succeeds.
// Self-contained: no libraries, nothing loaded from elsewhere; only DOM APIs (the page's CSP has no inline styles).
(() => {
  "use strict";

  const COLOURS = {
    happiness: "#3cc850", neutral: "#c8c8c8", surprise: "#ffc800", sadness: "#2878dc",
    anger: "#e62828", disgust: "#5a8c28", fear: "#a03cb4", contempt: "#c85078",
  };
  const SVG = "http://www.w3.org/2000/svg";
  const POLL_MS = 1000;
  const api = () => window.emotionApi || { headers: () => ({}), describeError: async (r) => `${r.status} ${r.statusText}` };

  function el(tag, attrs = {}, text = "") {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text) node.textContent = text;
    return node;
  }

  function svg(tag, attrs = {}) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  function build(root) {
    root.append(el("h2", {}, "Video: emotions per person over time"));
    const form = el("form", { id: "video-form" });
    const label = el("label", { for: "video-file" }, "Video file (MP4, MOV, WebM, MKV, AVI)");
    const input = el("input", { id: "video-file", type: "file", accept: "video/*" });
    const button = el("button", { id: "video-submit", type: "submit" }, "Analyse video");
    form.append(label, input, button);
    const status = el("p", { id: "video-status", role: "status", "aria-live": "polite" });
    const progress = el("progress", { id: "video-progress", max: "1", value: "0" });
    progress.hidden = true;
    const error = el("p", { id: "video-error", class: "error", role: "alert" });
    error.hidden = true;
    const result = el("div", { id: "video-result" });
    root.append(form, status, progress, error, result);
    return { form, input, button, status, progress, error, result };
  }

  async function postJson(url, body) {
    return fetch(url, {
      method: "POST", headers: { "content-type": "application/json", ...api().headers() }, body: JSON.stringify(body),
    });
  }

  async function upload(job, file) {
    const data = new FormData();
    for (const [k, v] of Object.entries(job.upload.fields)) data.append(k, v);
    data.append("file", file); // S3 requires the file to be the last field
    const resp = await fetch(job.upload.url, { method: "POST", body: data });
    if (!resp.ok) throw new Error(`the upload was refused (${resp.status})`);
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function poll(url, onProgress) {
    for (;;) {
      const resp = await fetch(url, { headers: api().headers() });
      if (!resp.ok) throw new Error(await api().describeError(resp));
      const job = await resp.json();
      onProgress(job);
      if (job.status === "succeeded" || job.status === "failed") return job;
      await sleep(POLL_MS);
    }
  }

  function seconds(ms) { return `${(ms / 1000).toFixed(1)} s`; }

  // One chart: a line per emotion (probability 0..1 against time), dominant emotion in the title.
  function trackChart(track, durationMs) {
    const W = 320, H = 90, PAD = 4;
    const figure = el("figure", { class: "track", "data-track-id": String(track.id) });
    const s = track.summary || {};
    const share = s.dominant_share != null ? ` (${Math.round(s.dominant_share * 100)}% of samples)` : "";
    figure.append(el("figcaption", {}, `Person #${track.id}: ${s.dominant_emotion || "?"}${share}, ` +
      `${seconds(track.first_ms)}–${seconds(track.last_ms)}`));
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
      "aria-label": `emotions of person ${track.id} over time` });
    chart.append(svg("rect", { x: 0, y: 0, width: W, height: H, fill: "#fafafa", stroke: "#ddd" }));
    const span = Math.max(durationMs, 1);
    const x = (t) => PAD + (t / span) * (W - 2 * PAD);
    const y = (p) => H - PAD - p * (H - 2 * PAD);
    const labels = Object.keys((track.timeline[0] || {}).emotions || {});
    for (const name of labels) {
      const points = track.timeline.map((pt) => `${x(pt.t_ms).toFixed(1)},${y(pt.emotions[name] || 0).toFixed(1)}`);
      if (track.timeline.length === 1) points.push(`${(x(track.timeline[0].t_ms) + 3).toFixed(1)},${points[0].split(",")[1]}`);
      const line = svg("polyline", { points: points.join(" "), fill: "none", stroke: COLOURS[name] || "#888",
        "stroke-width": name === s.dominant_emotion ? 2.5 : 1.2 });
      const title = svg("title");
      title.textContent = name;
      line.append(title);
      chart.append(line);
    }
    figure.append(chart);
    const legend = el("p", { class: "legend" });
    const means = Object.entries(s.mean_emotions || {}).slice(0, 3);
    legend.textContent = means.map(([k, v]) => `${k} ${Math.round(v * 100)}%`).join(" · ");
    figure.append(legend);
    return figure;
  }

  function showResult(ui, job) {
    ui.result.replaceChildren();
    const r = job.result;
    if (!r) {
      if (job.result_url) {
        const a = el("a", { href: job.result_url, rel: "noopener" }, "Download the result (JSON)");
        ui.result.append(a);
      }
      return;
    }
    if (r.kind !== "video") {
      ui.result.append(el("p", {}, `${(r.faces || []).length} face(s) found in the image.`));
    } else {
      const v = r.video;
      ui.result.append(el("p", { class: "video-summary" },
        `${r.tracks.length} person(s) tracked over ${seconds(v.duration_ms)} (${v.frames_processed} of ` +
        `${v.frames_read} frames analysed${v.frames_corrupt ? `, ${v.frames_corrupt} unreadable frames skipped` : ""}). ` +
        (r.summary.dominant_emotion ? `Overall: ${r.summary.dominant_emotion}.` : "No faces found.")));
      const list = el("div", { class: "tracks" });
      for (const track of r.tracks) list.append(trackChart(track, v.duration_ms));
      ui.result.append(list);
    }
    if (job.annotated_url) {
      ui.result.append(el("a", { href: job.annotated_url, rel: "noopener", download: "" }, "Download the annotated file"));
    }
  }

  function init() {
    const root = document.getElementById("video-jobs");
    if (!root) return;
    const ui = build(root);
    ui.form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const file = ui.input.files && ui.input.files[0];
      ui.error.hidden = true;
      ui.result.replaceChildren();
      if (!file) { ui.status.textContent = "Choose a video first."; return; }
      ui.button.disabled = true;
      ui.progress.hidden = false;
      ui.progress.value = 0;
      try {
        ui.status.textContent = "Creating the job…";
        const resp = await postJson("v1/jobs", { filename: file.name, content_type: file.type || "video/mp4", size: file.size });
        if (!resp.ok) throw new Error(await api().describeError(resp));
        const job = await resp.json();
        ui.status.textContent = "Uploading…";
        await upload(job, file);
        ui.status.textContent = "Waiting for the analysis…";
        const done = await poll(`v1/jobs/${job.job_id}`, (j) => {
          ui.progress.value = j.progress || 0;
          ui.status.textContent = j.status === "processing" ? `Analysing… ${Math.round((j.progress || 0) * 100)}%` : `Job ${j.status}…`;
        });
        if (done.status === "failed") throw new Error(`The analysis failed: ${(done.error && done.error.message) || "unknown reason"}`);
        ui.status.textContent = "Done.";
        showResult(ui, done);
      } catch (err) {
        ui.error.textContent = err.message || String(err);
        ui.error.hidden = false;
        ui.status.textContent = "";
      } finally {
        ui.button.disabled = false;
        ui.progress.hidden = true;
      }
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
