// "Many photos": choose or drop many photos, a folder or one ZIP/tar → one collection job (POST v1/jobs with an
// archive) → upload with the presigned form → poll its progress (images done / total, failures) → a sortable
// table (thumbnail, faces, dominant emotions), a chart of the dominant emotions, and the three result files.
// Photos chosen one by one or as a folder are packed into an uncompressed tar in the browser (a Blob of the files
// themselves between 512-byte headers: nothing is copied or re-encoded). No libraries; the CSP has no inline styles.
(() => {
  "use strict";

  const POLL_MS = 700;
  const IMAGE_EXT = /\.(jpe?g|png|webp|gif|bmp|tiff?|heic|heif)$/i;
  const ARCHIVE_EXT = /\.(zip|tar)$/i;
  const EMOTIONS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"];
  const api = () => window.emotionApi || { headers: () => ({}), describeError: async (r) => `${r.status} ${r.statusText}` };
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  const { el, upload } = window.emotionApi; // app.js, loaded first
  const SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs = {}, text = "") {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text) node.textContent = text;
    return node;
  }

  function build(root) {
    root.append(el("h2", { id: "collection-title" }, "Many photos: one table for a whole folder"));
    root.append(el("p", { class: "hint" }, "Choose or drop many photos, a folder, or one ZIP or tar archive. " +
      "Every photo is analysed on the server; you get a table, a chart and a CSV with one row per face."));
    const drop = el("div", { id: "collection-drop", class: "drop-zone collection-drop", tabindex: "0" });
    const buttons = el("div", { class: "buttons" });
    const filesLabel = el("label", { class: "button primary", for: "collection-files" }, "Choose photos or a ZIP");
    const files = el("input", { id: "collection-files", type: "file", multiple: "",
      accept: "image/*,.zip,.tar,application/zip,application/x-tar" });
    const folderLabel = el("label", { class: "button", for: "collection-folder" }, "Choose a folder");
    const folder = el("input", { id: "collection-folder", type: "file", webkitdirectory: "", multiple: "" });
    buttons.append(filesLabel, files, folderLabel, folder);
    drop.append(el("p", {}, "Drop photos, a folder or a ZIP here, or"), buttons);
    const status = el("p", { id: "collection-status", role: "status", "aria-live": "polite" });
    const progress = el("progress", { id: "collection-progress", max: "1", value: "0" });
    progress.hidden = true;
    const error = el("p", { id: "collection-error", class: "error", role: "alert" });
    error.hidden = true;
    const result = el("div", { id: "collection-result" });
    root.append(drop, status, progress, error, result);
    return { drop, files, folder, status, progress, error, result };
  }

  // ---- a tar of the chosen photos --------------------------------------------------------------------------

  const encoder = new TextEncoder();

  function octal(value, width) { return value.toString(8).padStart(width - 1, "0") + "\0"; }

  // ustar: names up to 100 bytes, or a prefix of up to 155 bytes split at a slash; longer ones are shortened.
  function splitName(name, index) {
    const bytes = encoder.encode(name);
    if (bytes.length <= 100) return ["", name];
    const cut = name.lastIndexOf("/", name.length - 1);
    if (cut > 0 && encoder.encode(name.slice(cut + 1)).length <= 100 && encoder.encode(name.slice(0, cut)).length <= 155) {
      return [name.slice(0, cut), name.slice(cut + 1)];
    }
    const base = name.split("/").pop().slice(-80);
    return ["", `${index}_${base}`];
  }

  function tarHeader(name, size, index) {
    const block = new Uint8Array(512);
    const put = (text, offset, width) => block.set(encoder.encode(text).slice(0, width), offset);
    const [prefix, short] = splitName(name, index);
    put(short, 0, 100);
    put(octal(0o644, 8), 100, 8);
    put(octal(0, 8), 108, 8);
    put(octal(0, 8), 116, 8);
    put(octal(size, 12), 124, 12);
    put(octal(Math.floor(Date.now() / 1000), 12), 136, 12);
    put("        ", 148, 8);
    put("0", 156, 1);
    put("ustar\0", 257, 6);
    put("00", 263, 2);
    put(prefix, 345, 155);
    let sum = 0;
    for (const byte of block) sum += byte;
    put(octal(sum, 7) + " ", 148, 8);
    return block;
  }

  function tarOf(entries) {
    const parts = [];
    entries.forEach(({ name, file }, index) => {
      parts.push(tarHeader(name, file.size, index), file);
      const pad = (512 - (file.size % 512)) % 512;
      if (pad) parts.push(new Uint8Array(pad));
    });
    parts.push(new Uint8Array(1024));
    return new Blob(parts, { type: "application/x-tar" });
  }

  // ---- files from inputs and drops -------------------------------------------------------------------------

  function entryName(file) { return file.webkitRelativePath || file.relativePath || file.name; }

  async function readEntry(entry, path, out) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      file.relativePath = path + file.name;
      out.push(file);
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await readEntry(child, `${path}${entry.name}/`, out);
      }
    }
  }

  async function droppedFiles(transfer) {
    const entries = [...(transfer.items || [])].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry())
      .filter(Boolean);
    if (!entries.length) return [...transfer.files];
    const out = [];
    for (const entry of entries) await readEntry(entry, "", out);
    return out;
  }

  // ---- the job ---------------------------------------------------------------------------------------------

  async function run(ui, chosen, retry) {
    ui.error.hidden = true;
    ui.result.replaceChildren();
    const archives = chosen.filter((f) => ARCHIVE_EXT.test(f.name));
    const photos = chosen.filter((f) => IMAGE_EXT.test(f.name) || (f.type || "").startsWith("image/"));
    let blob, name, type;
    const thumbs = new Map();
    if (archives.length === 1 && chosen.length === 1) {
      blob = archives[0];
      name = blob.name;
      type = /\.zip$/i.test(name) ? "application/zip" : "application/x-tar";
    } else if (photos.length) {
      const entries = photos.map((file) => ({ name: entryName(file), file }))
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)); // the order of a folder listing
      for (const { name: n, file } of entries) thumbs.set(n, file);
      blob = tarOf(entries);
      name = "photos.tar";
      type = "application/x-tar";
    } else {
      throw new Error("Choose photos (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC), a folder of them, or one ZIP or tar.");
    }
    ui.progress.hidden = false;
    ui.progress.removeAttribute("value");
    ui.status.textContent = `Sending ${photos.length && !archives.length ? `${photos.length} photos` : name}…`;
    const resp = await fetch("v1/jobs", { method: "POST", headers: { "content-type": "application/json",
      ...api().headers() }, body: JSON.stringify({ filename: name, content_type: type, size: blob.size }) });
    if (!resp.ok) throw new Error(await api().describeError(resp, retry));
    const job = await resp.json();
    await upload(job, blob, name);
    ui.status.textContent = "Checking the archive…";
    let done;
    for (;;) {
      const r = await fetch(`v1/jobs/${job.job_id}`, { headers: api().headers() });
      if (!r.ok) throw new Error(await api().describeError(r));
      done = await r.json();
      const c = done.collection || {};
      if (c.total) {
        ui.progress.max = c.total;
        ui.progress.value = c.done;
        ui.status.textContent = `Analysed ${c.done} of ${c.total} photos` + (c.failed ? ` (${c.failed} could not be read)` : "") + "…";
      }
      if (done.status === "succeeded" || done.status === "failed") break;
      await sleep(POLL_MS);
    }
    if (done.status === "failed") {
      throw new Error(`The collection failed: ${(done.error && done.error.message) || "unknown reason"}`);
    }
    const lines = await (await fetch(done.files.results_jsonl)).text();
    const rows = lines.split("\n").filter(Boolean).map((line) => JSON.parse(line));
    const summary = done.result || (await (await fetch(done.files.summary_json)).json());
    show(ui, rows, summary, done.files, thumbs);
    ui.status.textContent = `Done: ${plural(summary.images, "photo")}, ${plural(summary.faces, "face")}` +
      (summary.failed ? `; ${plural(summary.failed, "photo")} could not be analysed.` : ".");
  }

  // ---- the result ------------------------------------------------------------------------------------------

  function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }

  function dominantList(row) {
    const counts = {};
    for (const face of row.faces || []) counts[face.dominant_emotion] = (counts[face.dominant_emotion] || 0) + 1;
    return Object.entries(counts).sort((a, b) => b[1] - a[1]);
  }

  function chart(summary) {
    const counts = EMOTIONS.map((e) => [e, (summary.dominant_emotions || {})[e] || 0]);
    const top = Math.max(1, ...counts.map(([, n]) => n));
    const W = 400, rowH = 22, L = 90, R = 40;
    const figure = el("figure", { class: "collection-chart" });
    const graph = svg("svg", { id: "collection-chart", viewBox: `0 0 ${W} ${counts.length * rowH + 4}`, role: "img",
      "aria-label": "faces per dominant emotion" });
    counts.forEach(([name, n], i) => {
      const y = i * rowH + 2;
      graph.append(svg("text", { x: L - 6, y: y + 15, "text-anchor": "end", class: "tick" }, name));
      const bar = svg("rect", { x: L, y: y + 3, height: rowH - 6, width: Math.max(0, (n / top) * (W - L - R)), rx: 3,
        class: `bar e-${name}`, "data-emotion": name, "data-count": n });
      bar.append(svg("title", {}, `${name}: ${n} faces`));
      graph.append(bar, svg("text", { x: L + (n / top) * (W - L - R) + 6, y: y + 15, class: "tick" }, String(n)));
    });
    figure.append(graph, el("figcaption", {}, `Dominant emotion of each of the ${summary.faces} faces`));
    return figure;
  }

  function downloads(files) {
    const box = el("p", { class: "buttons downloads" });
    for (const [key, label, filename] of [["faces_csv", "Download CSV (one row per face)", "faces.csv"],
      ["results_jsonl", "Download JSONL", "results.jsonl"], ["summary_json", "Download summary", "summary.json"]]) {
      box.append(el("a", { class: "button", href: files[key], download: filename, id: `collection-${key}` }, label));
    }
    return box;
  }

  function show(ui, rows, summary, files, thumbs) {
    const head = el("tr");
    const columns = [["", null], ["Photo", "name"], ["Faces", "faces"], ["Dominant emotions", "dominant"]];
    const table = el("table", { id: "collection-table", class: "collection-table" });
    const body = el("tbody");
    const items = rows.map((row, index) => ({ row, index, faces: (row.faces || []).length,
      dominant: dominantList(row).map(([e]) => e).join(", ") }));
    let sortKey = null, ascending = true;
    const render = () => {
      const sorted = [...items];
      if (sortKey) {
        sorted.sort((a, b) => {
          const x = sortKey === "name" ? a.row.name : a[sortKey];
          const y = sortKey === "name" ? b.row.name : b[sortKey];
          const order = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
          return (ascending ? order : -order) || a.index - b.index;
        });
      }
      body.replaceChildren(...sorted.map(({ row, faces }) => {
        const tr = el("tr", { "data-name": row.name });
        const thumb = el("td", { class: "thumb" });
        const file = thumbs.get(row.name);
        if (file && !row.error) {
          const img = el("img", { alt: "", loading: "lazy", width: "56", height: "56" });
          img.src = URL.createObjectURL(file);
          thumb.append(img);
        }
        const counts = dominantList(row).map(([e, n]) => (n > 1 ? `${e} ×${n}` : e)).join(", ");
        tr.append(thumb, el("td", { class: "name" }, row.name), el("td", { class: "num" }, row.error ? "–" : String(faces)),
          el("td", {}, row.error ? `could not be analysed: ${row.error.code}` : (counts || "no face found")));
        if (row.error) tr.classList.add("failed");
        return tr;
      }));
    };
    for (const [label, key] of columns) {
      const th = el("th", { scope: "col" });
      if (key) {
        const button = el("button", { type: "button", class: "sort", "data-sort": key }, label);
        button.addEventListener("click", () => {
          ascending = sortKey === key ? !ascending : key !== "faces"; // text A→Z first, faces most first
          sortKey = key;
          for (const other of head.querySelectorAll("th")) other.removeAttribute("aria-sort");
          th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
          render();
        });
        th.append(button);
      } else {
        th.append(el("span", { class: "visually-hidden" }, "thumbnail"));
      }
      head.append(th);
    }
    const thead = el("thead");
    thead.append(head);
    table.append(thead, body);
    render();
    const wrap = el("div", { class: "table-wrap" });
    wrap.append(table);
    ui.result.append(downloads(files), chart(summary), wrap);
  }

  function init() {
    const root = document.getElementById("collection-jobs");
    if (!root) return;
    const ui = build(root);
    let busy = false;
    const start = async (chosen) => {
      if (busy || !chosen.length) return;
      busy = true;
      try {
        await run(ui, chosen, () => start(chosen));
      } catch (err) {
        ui.error.textContent = err.message || String(err);
        ui.error.hidden = false;
        ui.status.textContent = "";
      } finally {
        ui.progress.hidden = true;
        busy = false;
      }
    };
    for (const input of [ui.files, ui.folder]) {
      input.addEventListener("change", () => { start([...input.files]); input.value = ""; });
    }
    ui.drop.addEventListener("dragover", (event) => { event.preventDefault(); ui.drop.classList.add("dragging"); });
    ui.drop.addEventListener("dragleave", () => ui.drop.classList.remove("dragging"));
    ui.drop.addEventListener("drop", async (event) => {
      event.preventDefault();
      ui.drop.classList.remove("dragging");
      start(await droppedFiles(event.dataTransfer));
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
