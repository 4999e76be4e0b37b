// Video jobs: choose a video (and a classifier and sampling rate) → POST v1/jobs → upload with the presigned form
// → poll v1/jobs/{id} → the annotated video inline and one card per person (face, chart, dominant emotion).
// Results over the inline limit come as result_url and are fetched and drawn the same way.
// Self-contained: no libraries, nothing loaded from elsewhere; only DOM APIs (the page's CSP has no inline styles,
// so every colour is an SVG attribute or a class in video.css).
(() => {
  "use strict";

  // Line colours readable on the light and the dark card (neutral is a mid grey, not a near-white one).
  const COLOURS = {
    happiness: "#2e9e44", neutral: "#8a8a99", surprise: "#e0a800", sadness: "#2878dc",
    anger: "#e03030", disgust: "#6b8e23", fear: "#a44cc0", contempt: "#d0508a",
  };
  const SVG = "http://www.w3.org/2000/svg";
  const POLL_MS = 1000;
  const FPS_CHOICES = [["1", "1 frame per second"], ["2", "2 frames per second"], ["5", "5 frames per second"],
    ["10", "10 frames per second"], ["all", "every frame"]];
  const api = () => window.emotionApi || { headers: () => ({}), describeError: async (r) => `${r.status} ${r.statusText}` };

  function el(tag, attrs = {}, text = "") {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text) node.textContent = text;
    return node;
  }

  function svg(tag, attrs = {}, text = "") {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text) node.textContent = text;
    return node;
  }

  function build(root) {
    root.append(el("h2", {}, "Video: emotions per person over time"));
    const form = el("form", { id: "video-form", class: "video-form" });
    const fileLabel = el("label", { for: "video-file" }, "Video file (MP4, MOV, WebM, MKV, AVI)");
    const input = el("input", { id: "video-file", type: "file", accept: "video/*" });
    const classifierLabel = el("label", { for: "video-classifier" }, "Classifier");
    const classifier = el("select", { id: "video-classifier" });
    classifier.append(el("option", { value: "" }, "server default"));
    const fpsLabel = el("label", { for: "video-fps" }, "Frames analysed");
    const fps = el("select", { id: "video-fps" });
    for (const [value, text] of FPS_CHOICES) fps.append(el("option", { value }, text));
    fps.value = "5";
    const button = el("button", { id: "video-submit", type: "submit", class: "button primary" }, "Analyse video");
    form.append(fileLabel, input, classifierLabel, classifier, fpsLabel, fps, button);
    const status = el("p", { id: "video-status", role: "status", "aria-live": "polite" });
    const progress = el("progress", { id: "video-progress", max: "1", value: "0" });
    progress.hidden = true;
    const error = el("p", { id: "video-error", class: "error", role: "alert" });
    error.hidden = true;
    const result = el("div", { id: "video-result" });
    root.append(form, status, progress, error, result);
    return { form, input, classifier, fps, button, status, progress, error, result };
  }

  // The classifiers the photo part of the page loaded (app.js), again whenever it reloads them (a key entered).
  function fillClassifiers(select) {
    const fill = (info) => {
      const current = select.value;
      const options = [el("option", { value: "" }, "server default")];
      for (const m of (info && info.models) || []) {
        if (m.role === "classifier" && m.available !== false) options.push(el("option", { value: m.name }, m.name));
      }
      select.replaceChildren(...options);
      if (options.some((o) => o.value === current)) select.value = current;
    };
    document.addEventListener("emotion:models", (event) => fill(event.detail));
    if (window.emotionApi && window.emotionApi.models) fill(window.emotionApi.models);
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

  // A large result is stored as a file; its presigned URL carries its own authorisation.
  async function resultOf(job) {
    if (job.result) return job.result;
    if (!job.result_url) return null;
    const resp = await fetch(job.result_url);
    if (!resp.ok) throw new Error(`the result could not be fetched (${resp.status})`);
    return resp.json();
  }

  function seconds(ms) { return `${(ms / 1000).toFixed(1)} s`; }

  // Ticks at 1, 2 or 5 × 10^k seconds, about five of them over the video.
  function timeTicks(durationMs) {
    const span = Math.max(durationMs / 1000, 0.1);
    const raw = span / 5;
    const power = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
    const ticks = [];
    for (let t = 0; t <= span + 1e-9; t += step) ticks.push(Math.round(t * 1000) / 1000);
    return { ticks, step };
  }

  // One chart: a line per emotion (probability 0..100% against video time), with axes, ticks and gridlines;
  // a gap in the person's timeline (off screen) breaks the lines.
  function personChart(person, durationMs, labels) {
    const W = 340, H = 150, L = 34, R = 8, T = 8, B = 24;
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
      "aria-label": `emotions of person ${person.id} over time` });
    const span = Math.max(durationMs, 1);
    const x = (t) => L + (t / span) * (W - L - R);
    const y = (p) => T + (1 - p) * (H - T - B);
    const grid = svg("g", { class: "grid" });
    for (const p of [0, 0.5, 1]) {
      grid.append(svg("line", { x1: L, x2: W - R, y1: y(p), y2: y(p) }));
      grid.append(svg("text", { x: L - 4, y: y(p) + 3, "text-anchor": "end", class: "tick" }, `${p * 100}%`));
    }
    const { ticks, step } = timeTicks(durationMs);
    for (const t of ticks) {
      grid.append(svg("line", { x1: x(t * 1000), x2: x(t * 1000), y1: H - B, y2: H - B + 4, class: "axis" }));
      const label = step < 1 ? t.toFixed(1) : String(t);
      grid.append(svg("text", { x: x(t * 1000), y: H - B + 15, "text-anchor": "middle", class: "tick" }, `${label} s`));
    }
    grid.append(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
    grid.append(svg("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
    chart.append(grid);
    const points = person.timeline;
    const gapMs = Math.max(1200, 3 * medianStep(points));
    const dominant = (person.summary || {}).dominant_emotion;
    for (const name of labels) {
      let segment = [];
      const flush = () => {
        if (segment.length === 1) segment.push([segment[0][0] + 2, segment[0][1]]);
        if (segment.length > 1) {
          const line = svg("polyline", { points: segment.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(" "),
            fill: "none", stroke: COLOURS[name] || "#888", "stroke-width": name === dominant ? 2.6 : 1.3,
            "stroke-linejoin": "round", "data-emotion": name });
          line.append(svg("title", {}, name));
          chart.append(line);
        }
        segment = [];
      };
      let last = null;
      for (const pt of points) {
        if (last !== null && pt.t_ms - last > gapMs) flush();
        segment.push([x(pt.t_ms), y(pt.emotions[name] || 0)]);
        last = pt.t_ms;
      }
      flush();
    }
    return chart;
  }

  function medianStep(points) {
    if (points.length < 2) return 200;
    const steps = points.slice(1).map((p, i) => p.t_ms - points[i].t_ms).sort((a, b) => a - b);
    return steps[Math.floor(steps.length / 2)];
  }

  function legend(labels, summary) {
    const list = el("ul", { class: "legend" });
    const means = (summary && summary.mean_emotions) || {};
    for (const name of labels) {
      const item = el("li");
      const swatch = svg("svg", { width: 12, height: 12, viewBox: "0 0 12 12", "aria-hidden": "true" });
      swatch.append(svg("rect", { width: 12, height: 12, rx: 2, fill: COLOURS[name] || "#888" }));
      item.append(swatch, document.createTextNode(` ${name} ${Math.round((means[name] || 0) * 100)}%`));
      list.append(item);
    }
    return list;
  }

  function personCard(person, r, labels, player) {
    const card = el("article", { class: "person-card", "data-person-id": String(person.id) });
    const head = el("header");
    if (person.face) {
      head.append(el("img", { class: "person-face", src: `data:image/jpeg;base64,${person.face}`,
        alt: `face of person ${person.id}`, width: "64", height: "64" }));
    }
    const s = person.summary || {};
    const title = el("div");
    title.append(el("h3", {}, `Person ${person.id}`));
    const share = s.dominant_share != null ? `${Math.round(s.dominant_share * 100)}% of the time` : "";
    title.append(el("p", { class: "dominant" }, s.dominant_emotion ? `Mostly ${s.dominant_emotion} (${share})` : "No emotion measured"));
    const tracks = person.track_ids.length;
    title.append(el("p", { class: "meta" }, `On screen ${seconds(person.first_ms)}–${seconds(person.last_ms)}` +
      (tracks > 1 ? ` · seen ${tracks} times, joined by face identity` : "") +
      (person.identified === false ? " · face too small or unclear to identify" : "")));
    head.append(title);
    card.append(head, personChart(person, r.video.duration_ms, labels), legend(labels, s));
    if (player) {
      const jump = el("button", { type: "button", class: "button small" }, "Play from here");
      jump.addEventListener("click", () => { player.currentTime = person.first_ms / 1000; player.play().catch(() => {}); });
      card.append(jump);
    }
    return card;
  }

  function showResult(ui, job, r) {
    ui.result.replaceChildren();
    if (!r) return;
    if (r.kind !== "video") {
      ui.result.append(el("p", {}, `${(r.faces || []).length} face(s) found in the image.`));
      return;
    }
    const v = r.video;
    const persons = r.persons || r.tracks.map((t) => ({ ...t, track_ids: [t.id] }));
    ui.result.append(el("p", { class: "video-summary" },
      `${persons.length} ${persons.length === 1 ? "person" : "people"} over ${seconds(v.duration_ms)} ` +
      `(${r.tracks.length} face tracks; ${v.frames_processed} of ${v.frames_read} frames analysed` +
      `${v.frames_corrupt ? `, ${v.frames_corrupt} unreadable frames skipped` : ""}). ` +
      (r.summary.dominant_emotion ? `Overall: ${r.summary.dominant_emotion}.` : "No faces found.")));
    let player = null;
    if (job.annotated_url) {
      player = el("video", { id: "video-player", class: "player", controls: "", playsinline: "", preload: "auto",
        src: job.annotated_url });
      const figure = el("figure", { class: "player-figure" });
      const caption = el("figcaption");
      caption.append(document.createTextNode("Each face is boxed with its person number and emotion. "),
        el("a", { href: job.annotated_url, download: "annotated.mp4", rel: "noopener" }, "Download the video"));
      figure.append(player, caption);
      ui.result.append(figure);
    }
    const labels = Object.keys(((persons[0] || {}).timeline || [{}])[0]?.emotions || {}).sort();
    const grid = el("div", { class: "persons" });
    for (const person of persons) grid.append(personCard(person, r, labels, player));
    ui.result.append(grid);
  }

  function init() {
    const root = document.getElementById("video-jobs");
    if (!root) return;
    const ui = build(root);
    fillClassifiers(ui.classifier);
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
        const request = { filename: file.name, content_type: file.type || "video/mp4", size: file.size,
          fps: ui.fps.value === "all" ? "all" : Number(ui.fps.value) };
        if (ui.classifier.value) request.classifier = ui.classifier.value;
        const resp = await postJson("v1/jobs", request);
        if (!resp.ok) throw new Error(await api().describeError(resp, () => ui.form.requestSubmit()));
        const job = await resp.json();
        ui.status.textContent = "Uploading…";
        await upload(job, file);
        ui.status.textContent = "Waiting for the analysis…";
        const done = await poll(`v1/jobs/${job.job_id}`, (j) => {
          ui.progress.value = j.progress || 0;
          ui.status.textContent = j.status === "processing" ? `Analysing… ${Math.round((j.progress || 0) * 100)}%` : `Job ${j.status}…`;
        });
        if (done.status === "failed") throw new Error(`The analysis failed: ${(done.error && done.error.message) || "unknown reason"}`);
        ui.status.textContent = done.result ? "Done." : "Done. Fetching the result…";
        const r = await resultOf(done);
        showResult(ui, done, r);
        ui.status.textContent = "Done.";
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
