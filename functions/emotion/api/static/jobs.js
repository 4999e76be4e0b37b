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
  const POLL_MS = 1000;
  const FPS_CHOICES = [["1", "1 frame per second"], ["2", "2 frames per second"], ["5", "5 frames per second"],
    ["10", "10 frames per second"], ["all", "every frame"]];
  const api = () => window.emotionApi || { headers: () => ({}), describeError: async (r) => `${r.status} ${r.statusText}` };

  const { el, upload } = window.emotionApi; // app.js, loaded first
  const SVG = "http://www.w3.org/2000/svg";

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
        if (m.role === "classifier" && m.available !== false && !m.form_of) options.push(el("option", { value: m.name }, m.name));
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

  const TOP_LINES = 3; // emotions drawn per person: those with the highest mean probability
  const SMOOTH_MS = 1000; // the lines are centred moving averages over this much video (at least 3 frames)
  const CHART_HEIGHT = 170;

  // Ticks at 1, 2, 5 × 10^k seconds (or 15 s, 30 s, minutes), at most `count` of them over the video.
  function timeTicks(durationMs, count) {
    const span = Math.max(durationMs / 1000, 0.1);
    const raw = span / Math.max(1, count);
    const power = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * power).concat([15, 30, 60, 120, 300, 600])
      .filter((v) => v >= raw).sort((x, y) => x - y)[0];
    const ticks = [];
    for (let t = 0; t <= span + 1e-9; t += step) ticks.push(Math.round(t * 1000) / 1000);
    return { ticks, step };
  }

  // "0 s", "2.5 s" under a minute; "1:30" (minutes:seconds) for longer videos.
  function timeLabel(t, step, durationMs) {
    if (durationMs < 60000) return `${step < 1 ? t.toFixed(1) : String(Math.round(t))} s`;
    const m = Math.floor(t / 60);
    return `${m}:${String(Math.round(t - m * 60)).padStart(2, "0")}`;
  }

  // The person's timeline cut where they were off screen (a gap of more than 3 analysed frames, at least 1.2 s).
  function segments(points) {
    const gapMs = Math.max(1200, 3 * medianStep(points));
    const parts = [];
    let part = [];
    for (const pt of points) {
      if (part.length && pt.t_ms - part[part.length - 1].t_ms > gapMs) { parts.push(part); part = []; }
      part.push(pt);
    }
    if (part.length) parts.push(part);
    return parts;
  }

  // The smoothing window: SMOOTH_MS, widened to 3 analysed frames when frames are sparse.
  function windowMs(points) { return Math.max(SMOOTH_MS, 3 * medianStep(points)); }

  // Centred moving average of one emotion over one segment: each point is the mean of the points within half
  // the window on either side of it (fewer at the segment's ends).
  function smoothed(part, name, halfMs) {
    const out = [];
    let lo = 0;
    let hi = 0;
    let sum = 0;
    for (let i = 0; i < part.length; i += 1) {
      const t = part[i].t_ms;
      while (hi < part.length && part[hi].t_ms <= t + halfMs) { sum += part[hi].emotions[name] || 0; hi += 1; }
      while (part[lo].t_ms < t - halfMs) { sum -= part[lo].emotions[name] || 0; lo += 1; }
      out.push([t, sum / (hi - lo)]);
    }
    return out;
  }

  // One chart in the card's own pixels (drawn again when the card's width changes, so labels keep their size
  // on a phone): the top emotions' smoothed lines against video time, gaps where the person was off screen.
  function drawChart(chart, person, durationMs, drawn, width) {
    const W = Math.max(200, width), H = CHART_HEIGHT, L = 40, R = 10, T = 8, B = 26;
    chart.replaceChildren();
    chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
    chart.setAttribute("width", String(W));
    chart.setAttribute("height", String(H));
    const span = Math.max(durationMs, 1);
    const x = (t) => L + (t / span) * (W - L - R);
    const y = (p) => T + (1 - p) * (H - T - B);
    const grid = svg("g", { class: "grid" });
    for (const p of [0, 0.5, 1]) {
      grid.append(svg("line", { x1: L, x2: W - R, y1: y(p), y2: y(p) }));
      grid.append(svg("text", { x: L - 5, y: y(p) + 4, "text-anchor": "end", class: "tick" }, `${p * 100}%`));
    }
    const { ticks, step } = timeTicks(durationMs, Math.floor((W - L - R) / 50));
    for (const t of ticks) {
      grid.append(svg("line", { x1: x(t * 1000), x2: x(t * 1000), y1: H - B, y2: H - B + 4, class: "axis" }));
      grid.append(svg("text", { x: x(t * 1000), y: H - B + 18, "text-anchor": t === 0 ? "start" : "middle",
        class: "tick" }, timeLabel(t, step, durationMs)));
    }
    grid.append(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
    grid.append(svg("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
    chart.append(grid);
    const half = windowMs(person.timeline) / 2;
    for (const [rank, name] of drawn.entries()) {
      for (const part of segments(person.timeline)) {
        let pts = smoothed(part, name, half).map(([t, p]) => [x(t), y(p)]);
        if (pts.length === 1) pts = [pts[0], [pts[0][0] + 2, pts[0][1]]];
        const line = svg("polyline", { points: pts.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(" "),
          fill: "none", stroke: COLOURS[name] || "#888", "stroke-width": rank === 0 ? 2.8 : 1.8,
          "stroke-linejoin": "round", "data-emotion": name });
        line.append(svg("title", {}, name));
        chart.append(line);
      }
    }
  }

  function personChart(person, durationMs, drawn) {
    const box = el("div", { class: "chart-box" });
    const chart = svg("svg", { class: "chart", role: "img",
      "aria-label": `${drawn.join(", ")} of person ${person.id} over time, smoothed` });
    box.append(chart);
    let drawnWidth = 0;
    const draw = (width) => {
      const w = Math.round(width);
      if (w > 0 && w !== drawnWidth) { drawnWidth = w; drawChart(chart, person, durationMs, drawn, w); }
    };
    draw(340); // a first drawing; the observer redraws it at the card's width once it is laid out
    new ResizeObserver((entries) => draw(entries[0].contentRect.width)).observe(box);
    return box;
  }

  function medianStep(points) {
    if (points.length < 2) return 200;
    const steps = points.slice(1).map((p, i) => p.t_ms - points[i].t_ms).sort((a, b) => a - b);
    return steps[Math.floor(steps.length / 2)];
  }

  // Every emotion with its mean probability, highest first; the drawn ones have a filled swatch.
  function legend(ranked, drawn) {
    const list = el("ul", { class: "legend" });
    for (const [name, mean] of ranked) {
      const shown = drawn.includes(name);
      const item = el("li", shown ? { class: "drawn" } : {});
      const swatch = svg("svg", { width: 12, height: 12, viewBox: "0 0 12 12", "aria-hidden": "true" });
      swatch.append(svg("rect", shown ? { width: 12, height: 12, rx: 2, fill: COLOURS[name] || "#888" }
        : { x: 1, y: 1, width: 10, height: 10, rx: 2, fill: "none", stroke: COLOURS[name] || "#888" }));
      item.append(swatch, document.createTextNode(` ${name} ${Math.round(mean * 100)}%`));
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
    const means = s.mean_emotions || {};
    const ranked = labels.map((name) => [name, means[name] || 0]).sort((a, b) => b[1] - a[1]);
    const drawn = ranked.slice(0, TOP_LINES).map(([name]) => name);
    const title = el("div");
    title.append(el("h3", {}, `Person ${person.id}`));
    if (s.dominant_emotion) {
      const frames = s.samples || person.timeline.length;
      title.append(el("p", { class: "dominant" }, `Mostly ${s.dominant_emotion}: ` +
        `${Math.round((means[s.dominant_emotion] || 0) * 100)}% on average`));
      title.append(el("p", { class: "meta" }, `top emotion in ${Math.round((s.dominant_share || 0) * 100)}% of ` +
        `${frames} analysed frame${frames === 1 ? "" : "s"}`));
    } else {
      title.append(el("p", { class: "dominant" }, "No emotion measured"));
    }
    const tracks = person.track_ids.length;
    title.append(el("p", { class: "meta" }, `On screen ${seconds(person.first_ms)}–${seconds(person.last_ms)}` +
      (tracks > 1 ? ` · seen ${tracks} times, joined by face identity` : "") +
      (person.identified === false ? " · face too small or unclear to identify" : "")));
    head.append(title);
    card.append(head, personChart(person, r.video.duration_ms, drawn), legend(ranked, drawn));
    if (player) {
      const jump = el("button", { type: "button", class: "button small" }, "Play from here");
      jump.addEventListener("click", () => { player.currentTime = person.first_ms / 1000; player.play().catch(() => {}); });
      card.append(jump);
    }
    return card;
  }

  // How to read the cards, once above them: what "Mostly", the percentages and the lines are.
  function readingNote(persons) {
    const steps = persons.map((p) => windowMs(p.timeline));
    const win = (Math.max(...steps, SMOOTH_MS) / 1000).toFixed(1);
    return el("p", { class: "note reading" }, "How to read a card: “Mostly X: N% on average” is the emotion " +
      "with the highest mean probability over the frames where the person was analysed (the legend lists every " +
      "emotion's mean); “top emotion in N%” counts the frames where X was the most probable one. Lines: the " +
      `${TOP_LINES} emotions with the highest mean (filled swatches), each smoothed with a centred moving ` +
      `average over ${win} s of video (at least 3 analysed frames); a gap is time off screen.`);
  }

  // One row per person per analysed frame: the person's timeline with the track each point came from.
  function timelineCsv(r, persons, labels) {
    const trackOf = new Map();
    for (const t of r.tracks) for (const pt of t.timeline) trackOf.set(`${t.person_id}:${pt.frame}`, t.id);
    const header = ["person", "track", "t_ms", "frame", "x", "y", "width", "height", "confidence",
      "dominant_emotion", ...labels];
    const rows = [header.join(",")];
    for (const person of persons) {
      for (const pt of person.timeline) {
        const b = pt.box;
        rows.push([person.id, trackOf.get(`${person.id}:${pt.frame}`) ?? "", pt.t_ms, pt.frame, b.x, b.y, b.width,
          b.height, pt.confidence, pt.dominant_emotion, ...labels.map((name) => pt.emotions[name] ?? "")].join(","));
      }
    }
    return `${rows.join("\n")}\n`;
  }

  function downloads(r, persons, labels, stem) {
    const row = el("div", { class: "buttons downloads video-downloads" });
    const json = el("button", { id: "video-download-json", type: "button", class: "button" }, "Download JSON");
    const csv = el("button", { id: "video-download-csv", type: "button", class: "button",
      title: "one row per person per analysed frame: time, box and every emotion's probability" }, "Download CSV");
    const save = (text, type, name) => window.emotionApi.download(new Blob([text], { type }), name);
    json.addEventListener("click", () => save(JSON.stringify(r, null, 2), "application/json", `${stem}.emotions.json`));
    csv.addEventListener("click", () => save(timelineCsv(r, persons, labels), "text/csv", `${stem}.timeline.csv`));
    row.append(json, csv, el("span", { class: "hint" }, "CSV: one row per person per analysed frame."));
    return row;
  }

  function showResult(ui, job, r, filename) {
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
    const stem = (filename || "video").replace(/\.[^.]+$/, "") || "video";
    ui.result.append(downloads(r, persons, labels, stem));
    if (persons.length) ui.result.append(readingNote(persons));
    // Background faces (an audience, passers-by: they fill little of the video) are folded away below.
    const grid = el("div", { class: "persons" });
    const folded = el("div", { class: "persons" });
    for (const person of persons) (person.background ? folded : grid).append(personCard(person, r, labels, player));
    ui.result.append(grid);
    if (folded.children.length) {
      const details = el("details", { class: "background-persons" });
      const n = folded.children.length;
      details.append(el("summary", {}, `${n} background ${n === 1 ? "face" : "faces"} (small or briefly seen)`),
        folded);
      ui.result.append(details);
    }
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
        showResult(ui, done, r, file.name);
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
