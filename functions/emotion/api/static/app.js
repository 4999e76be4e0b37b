// The photo page: choose / drop / paste a photo or use the webcam → POST v1/analyze → numbered boxes on the
// photo, one card per face (in the JSON's order), downloads. Self-contained (no libraries, nothing loaded from
// elsewhere). URLs are relative so the page also works behind an API Gateway stage prefix. jobs.js (video
// jobs) reuses window.emotionApi.
(() => {
  "use strict";

  // Box colours: the server's annotated images (emotion/core/annotate.py, converted from BGR).
  const COLOURS = {
    happiness: "#3cc850", neutral: "#c8c8c8", surprise: "#ffc800", sadness: "#2878dc",
    anger: "#e62828", disgust: "#5a8c28", fear: "#a03cb4", contempt: "#c85078",
  };
  const KEY_STORAGE = "emotion-api-key";
  const TOP_EMOTIONS = 3; // bars shown per face; the rest behind "All emotions"
  const MAX_SENT_SIDE = 4096; // a downscaled photo's long side (detection runs at about 1024 px anyway)
  const MULTIPART_OVERHEAD = 64 * 1024;
  const LIVE_FPS = 5; // webcam frames sent per second at most (one request in flight at a time)
  const LIVE_WIDTH = 640; // webcam frames are sent at this width
  const $ = (id) => document.getElementById(id);

  const els = {
    drop: $("drop-zone"), file: $("file-input"), cameraButton: $("camera-button"), camera: $("camera"),
    video: $("camera-video"), cameraOverlay: $("camera-overlay"), live: $("live-button"), liveStats: $("live-stats"),
    snap: $("snap-button"), cameraClose: $("camera-close"), options: $("options"), classifier: $("classifier"),
    minFace: $("min-face"), apiKey: $("api-key"), keyPanel: $("key-panel"), keyForm: $("key-form"),
    keyReason: $("key-reason"), keySet: $("key-set"), keyForget: $("key-forget"), status: $("status"), error: $("error"), result: $("result"),
    summary: $("summary"), resizeNote: $("resize-note"), stage: $("stage"), photo: $("photo"),
    overlay: $("overlay"), caption: $("caption"), faces: $("faces"), sizeLimit: $("size-limit"),
    downloadJson: $("download-json"), downloadAnnotated: $("download-annotated"),
  };

  const state = {
    limits: { max_body_bytes: 6000000, max_pixels: 40000000, max_side: 20000 },
    classifierNames: {}, // model version → name, for the caption
    photoUrl: null, stream: null, busy: false, last: null, live: null,
    retry: null, // what to run again once the user has entered an API key
  };

  // ---------------------------------------------------------------------------------------- API helpers
  // The API key lives in sessionStorage only: this tab, until it closes. Never in localStorage or a cookie.
  function apiHeaders() {
    const key = sessionStorage.getItem(KEY_STORAGE) || "";
    return key ? { "x-api-key": key } : {};
  }

  function showKeyState() {
    els.keySet.hidden = !sessionStorage.getItem(KEY_STORAGE);
  }

  // The API answered 401 (or API Gateway's bare 403): ask for a key, and run `retry` once one is entered.
  // A key that was sent and refused is dropped, so a reload asks again instead of failing again.
  function askForKey(retry) {
    const refused = Boolean(sessionStorage.getItem(KEY_STORAGE));
    sessionStorage.removeItem(KEY_STORAGE);
    showKeyState();
    els.keyReason.textContent = refused
      ? "The key you entered was not accepted. Check it and enter it again."
      : "Enter your API key to analyse photos and videos here; the page itself needs none.";
    if (retry) state.retry = retry;
    const wasHidden = els.keyPanel.hidden;
    els.keyPanel.hidden = false;
    if (wasHidden) els.keyPanel.scrollIntoView({ block: "nearest" });
    els.apiKey.focus();
  }

  const needsKey = (response) => response.status === 401 || response.status === 403;

  const FRIENDLY = {
    unsupported_media_type: "That file is not a photo the service can read. Use a JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC image.",
    undecodable_image: "The photo could not be read: the file looks damaged or incomplete.",
    empty_input: "The file is empty: there is no photo in it.",
    image_too_large: "The photo is too large.",
    image_too_small: "The photo is too small to find faces in.",
    unauthorized: "This service needs an API key: enter it above.",
    bad_parameter: "An option is not valid.",
    model_unavailable: "The server is not ready: its models are missing.",
    too_many_requests: "The server is busy. Wait a moment and try again.",
  };

  // A sentence for a failed response: {"error": {"code", "message"}} when the service answered it. A 401 (or
  // API Gateway's 403) also opens the key form; `retry` runs once a key is entered.
  async function describeError(response, retry) {
    if (needsKey(response)) askForKey(retry);
    let code = "";
    let message = "";
    try {
      const body = await response.json();
      code = (body && body.error && body.error.code) || "";
      message = (body && body.error && body.error.message) || (body && body.message) || "";
    } catch (_) { /* not JSON (e.g. a gateway page) */ }
    if (response.status === 401 || response.status === 403) code = code || "unauthorized";
    if (response.status === 413) code = code || "image_too_large";
    if (response.status === 429) code = code || "too_many_requests";
    const friendly = FRIENDLY[code];
    // The service's own message adds facts (sizes, limits, which option) except for these plain cases.
    const plain = ["unsupported_media_type", "empty_input", "unauthorized"].includes(code);
    const detail = message && !plain ? ` (${message})` : "";
    if (friendly) return friendly + detail;
    return `The server could not analyse this file: ${response.status} ${response.statusText || ""}${detail}`.trim();
  }

  // The DOM builder and the presigned upload, shared with jobs.js and collection.js (loaded after this file).
  function el(tag, attrs = {}, text = "") {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text) node.textContent = text;
    return node;
  }

  // POST the file to a job's presigned form; S3 requires the file to be the last field.
  async function upload(job, file, name) {
    const data = new FormData();
    for (const [k, v] of Object.entries(job.upload.fields)) data.append(k, v);
    if (name) data.append("file", file, name);
    else data.append("file", file);
    const resp = await fetch(job.upload.url, { method: "POST", body: data });
    if (!resp.ok) throw new Error(`the upload was refused (${resp.status})`);
  }

  window.emotionApi = { headers: apiHeaders, describeError, el, upload };

  function queryParams() {
    const params = new URLSearchParams();
    if (els.classifier.value) params.set("classifier", els.classifier.value);
    const minFace = els.minFace.value.trim();
    if (minFace) params.set("min_face", minFace);
    return params;
  }

  function postImage(path, blob, name, params) {
    const form = new FormData();
    form.append("image", blob, name);
    return fetch(`${path}?${params}`, { method: "POST", body: form, headers: apiHeaders() });
  }

  // ---------------------------------------------------------------------------------------------- view
  function setStatus(text) { els.status.textContent = text; }

  function showError(text) {
    els.error.textContent = text;
    els.error.hidden = false;
    setStatus("");
  }

  function clearError() {
    els.error.hidden = true;
    els.error.textContent = "";
  }

  const pct = (p) => `${Math.round(p * 100)}%`;
  const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
  const mp = (pixels) => `${Math.round(pixels / 1e6)} MP`;

  function barRows(entries, index) {
    const bars = document.createElement("div");
    bars.className = "bars";
    bars.setAttribute("role", "list");
    bars.setAttribute("aria-label", `emotion probabilities of face ${index + 1}`);
    for (const [name, p] of entries) {
      const label = document.createElement("span");
      label.className = "label";
      label.setAttribute("role", "listitem");
      label.setAttribute("aria-label", `${name} ${pct(p)}`);
      label.textContent = name;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.setAttribute("aria-hidden", "true");
      const fill = document.createElement("i");
      fill.dataset.emotion = name;
      fill.style.width = `${Math.max(0, Math.min(100, p * 100)).toFixed(1)}%`;
      bar.appendChild(fill);
      const value = document.createElement("span");
      value.className = "pct";
      value.textContent = pct(p);
      bars.append(label, bar, value);
    }
    return bars;
  }

  // Pose and quality of a face, and a warning when its expression is hard to read (quality.reliable false).
  function poseQuality(face) {
    const p = document.createElement("p");
    p.className = "meta pose-quality";
    const deg = (v) => `${Math.round(v)}°`;
    const { pose, quality } = face;
    p.textContent = `Pose: yaw ${deg(pose.yaw)}, pitch ${deg(pose.pitch)}, roll ${deg(pose.roll)}. ` +
      `Quality: brightness ${Math.round(quality.brightness)}/255, sharpness ${Math.round(quality.sharpness)}, ` +
      `size ${quality.size} px.`;
    if (!quality.reliable) {
      const warn = document.createElement("strong");
      warn.className = "unreliable";
      warn.textContent = " Low quality: expressions are often misread on faces this dark, blurred or small.";
      p.appendChild(warn);
    }
    return p;
  }

  function faceCard(face, index) {
    const li = document.createElement("li");
    li.className = "face-card";
    li.id = `face-${index + 1}`;
    li.tabIndex = 0;
    li.dataset.index = String(index);
    li.dataset.emotion = face.dominant_emotion;
    li.style.setProperty("--box", COLOURS[face.dominant_emotion] || "#ffffff");

    const crop = document.createElement("canvas");
    crop.className = "crop";
    crop.width = 72;
    crop.height = 72;
    crop.setAttribute("role", "img");
    crop.setAttribute("aria-label", `face ${index + 1}`);
    li.appendChild(crop);

    const body = document.createElement("div");
    body.className = "card-body";
    const h3 = document.createElement("h3");
    h3.textContent = `Face ${index + 1}: ${face.dominant_emotion} ${pct(face.emotions[face.dominant_emotion])}`;
    const meta = document.createElement("p");
    meta.className = "meta";
    const b = face.box;
    meta.textContent = `${b.width}×${b.height} px at (${b.x}, ${b.y}); detector confidence ${pct(face.confidence)}`;
    body.append(h3, meta, poseQuality(face));

    const entries = Object.entries(face.emotions).sort((a, c) => c[1] - a[1]);
    body.appendChild(barRows(entries.slice(0, TOP_EMOTIONS), index));
    if (entries.length > TOP_EMOTIONS) {
      const more = document.createElement("details");
      more.className = "more";
      const summary = document.createElement("summary");
      summary.textContent = `All ${entries.length} emotions`;
      more.append(summary, barRows(entries.slice(TOP_EMOTIONS), index));
      body.appendChild(more);
    }
    li.appendChild(body);
    return li;
  }

  function faceBox(face, index, image) {
    const box = document.createElement("div");
    box.className = "face-box";
    box.dataset.index = String(index);
    const b = face.box;
    box.style.left = `${(100 * b.x) / image.width}%`;
    box.style.top = `${(100 * b.y) / image.height}%`;
    box.style.width = `${(100 * b.width) / image.width}%`;
    box.style.height = `${(100 * b.height) / image.height}%`;
    const colour = COLOURS[face.dominant_emotion] || "#ffffff";
    box.style.setProperty("--box", colour);
    box.style.setProperty("--on-box", textOn(colour));
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.dataset.full = `${index + 1} ${face.dominant_emotion} ${pct(face.emotions[face.dominant_emotion])}`;
    tag.dataset.short = String(index + 1);
    tag.textContent = tag.dataset.full;
    box.appendChild(tag);
    return box;
  }

  // Black or white text, whichever contrasts more with the colour (WCAG relative luminance).
  function luminance(hex) {
    const c = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255)
      .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  }
  function textOn(hex) { return (luminance(hex) + 0.05) / 0.05 >= 1.05 / (luminance(hex) + 0.05) ? "#000" : "#fff"; }

  // Labels never overlap: each tries a few places around its box (above, below, inside, beside) and takes
  // the first that stays on the photo and clear of the labels placed before it, preferring places that cover
  // no other face; when none is free the label shrinks to its number (the card has the details).
  function placeLabels() {
    const stage = els.overlay.getBoundingClientRect();
    if (!stage.width) return;
    const boxes = [...els.overlay.querySelectorAll(".face-box")];
    const rects = boxes.map((el) => {
      const r = el.getBoundingClientRect();
      return { x: r.left - stage.left, y: r.top - stage.top, w: r.width, h: r.height };
    });
    const placed = [];
    const hit = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
    boxes.forEach((el, i) => {
      const tag = el.querySelector(".tag");
      const box = rects[i];
      let choice = null;
      for (const text of [tag.dataset.full, tag.dataset.short]) {
        tag.textContent = text;
        tag.style.left = "0px";
        tag.style.top = "0px";
        const w = tag.offsetWidth + 2; // 1 px of air on each side
        const h = tag.offsetHeight + 2;
        const spots = [
          [box.x, box.y - h], [box.x, box.y + box.h], [box.x, box.y], [box.x + box.w - w, box.y - h],
          [box.x + box.w - w, box.y + box.h], [box.x - w, box.y], [box.x + box.w, box.y],
          [box.x, box.y + box.h - h],
        ].map(([x, y]) => ({ x: Math.min(Math.max(0, x), stage.width - w), y, w, h }))
          .filter((s) => s.y >= 0 && s.y + h <= stage.height && !placed.some((p) => hit(s, p)));
        choice = spots.find((s) => !rects.some((r, j) => j !== i && hit(s, r))) || spots[0] || null;
        if (choice) break;
      }
      if (!choice) { // nowhere free even for the number: inside the box's corner
        choice = { x: box.x, y: box.y, w: tag.offsetWidth + 2, h: tag.offsetHeight + 2 };
      }
      placed.push(choice);
      // The tag is positioned from the box's padding edge, inside its border.
      tag.style.left = `${choice.x + 1 - box.x - el.clientLeft}px`;
      tag.style.top = `${choice.y + 1 - box.y - el.clientTop}px`;
    });
  }
  new ResizeObserver(() => { if (!els.result.hidden) placeLabels(); }).observe(els.stage);

  function highlight(index, on) {
    for (const el of document.querySelectorAll(`[data-index="${index}"]`)) el.classList.toggle("active", on);
    els.overlay.classList.toggle("focusing", on);
  }

  function linkCardsAndBoxes() {
    for (const el of [...els.faces.children, ...els.overlay.children]) {
      const index = el.dataset.index;
      el.addEventListener("mouseenter", () => highlight(index, true));
      el.addEventListener("mouseleave", () => highlight(index, false));
      el.addEventListener("focus", () => highlight(index, true));
      el.addEventListener("blur", () => highlight(index, false));
    }
    for (const box of els.overlay.children) {
      box.addEventListener("click", () => {
        const card = $(`face-${Number(box.dataset.index) + 1}`);
        card.scrollIntoView({ block: "nearest", behavior: "smooth" });
        card.focus({ preventScroll: true });
      });
    }
  }

  function drawCrops(result) {
    const img = els.photo;
    if (!img.naturalWidth) return;
    // The shown photo may be the server's JPEG of a format the browser cannot show: same size as the result.
    const sx = img.naturalWidth / result.image.width;
    const sy = img.naturalHeight / result.image.height;
    [...els.faces.querySelectorAll("canvas.crop")].forEach((canvas, i) => {
      const b = result.faces[i].box;
      const side = Math.max(b.width, b.height) * 1.15; // a square around the face
      const cx = (b.x + b.width / 2) * sx;
      const cy = (b.y + b.height / 2) * sy;
      const ctx = canvas.getContext("2d");
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(img, cx - (side * sx) / 2, cy - (side * sy) / 2, side * sx, side * sy, 0, 0, canvas.width, canvas.height);
    });
  }

  function render(result, name, ms) {
    const faces = result.faces; // the JSON's order: "Face 1" is faces[0] everywhere
    els.stage.style.aspectRatio = `${result.image.width} / ${result.image.height}`;
    els.overlay.replaceChildren(...faces.map((f, i) => faceBox(f, i, result.image)));
    els.faces.replaceChildren(...faces.map(faceCard));
    const n = faces.length;
    const server = result.timings_ms && result.timings_ms.total;
    els.summary.textContent = n === 0
      ? "No faces found. Try a larger, well-lit photo with faces looking at the camera."
      : `${n} face${n === 1 ? "" : "s"} found.`;
    const classifier = state.classifierNames[result.models.classifier] || result.models.classifier;
    els.caption.textContent = `${name}: ${result.image.width}×${result.image.height} px, analysed in ` +
      `${server != null ? Math.round(server) : "?"} ms on the server (${Math.round(ms)} ms round trip); ` +
      `classifier ${classifier}.`;
    els.result.hidden = false;
    els.result.dataset.faces = String(n);
    linkCardsAndBoxes();
    placeLabels();
    drawCrops(result);
  }

  // Show the photo itself; formats the browser cannot display (TIFF, HEIC) come back as a JPEG from v1/annotate.
  function showPhoto(blob, params) {
    return new Promise((resolve) => {
      if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
      state.photoUrl = URL.createObjectURL(blob);
      els.photo.onload = () => resolve();
      els.photo.onerror = async () => {
        els.photo.onerror = null;
        try {
          const response = await postImage("v1/annotate", blob, "photo", params);
          if (response.ok) {
            URL.revokeObjectURL(state.photoUrl);
            state.photoUrl = URL.createObjectURL(await response.blob());
            els.photo.onload = () => resolve();
            els.photo.src = state.photoUrl;
            return;
          }
        } catch (_) { /* keep the boxes without the photo */ }
        resolve();
      };
      els.photo.src = state.photoUrl;
    });
  }

  // ------------------------------------------------------------------------------------ size and scale
  // The photo to send: as it is when within the service's limits, else scaled down on a canvas. Throws an
  // Error with a sentence when the file is too large and this browser cannot decode it to shrink it.
  async function prepare(file) {
    const limits = state.limits;
    const budget = limits.max_body_bytes - MULTIPART_OVERHEAD;
    let bitmap = null;
    try {
      bitmap = await createImageBitmap(file); // EXIF orientation applied, as the <img> and the server do
    } catch (_) { /* a format the browser does not decode (TIFF, HEIC) or not an image: the server says */ }
    const w = bitmap ? bitmap.width : 0;
    const h = bitmap ? bitmap.height : 0;
    const tooBig = file.size > budget;
    const tooManyPixels = bitmap && (w * h > limits.max_pixels || Math.max(w, h) > limits.max_side);
    if (!tooBig && !tooManyPixels) {
      if (bitmap) bitmap.close();
      return { blob: file, original: null };
    }
    if (!bitmap) {
      throw new Error(`The file is ${mb(file.size)}; the service takes up to ${mb(budget)}, and this browser ` +
        "cannot shrink this format. Save the photo as a JPEG (or a smaller one) and try again.");
    }
    let scale = Math.min(1, MAX_SENT_SIDE / Math.max(w, h), Math.sqrt(limits.max_pixels / (w * h)));
    let blob = null;
    let sw = 0;
    let sh = 0;
    for (let attempt = 0; attempt < 6; attempt += 1) {
      sw = Math.max(1, Math.round(w * scale));
      sh = Math.max(1, Math.round(h * scale));
      const canvas = document.createElement("canvas");
      canvas.width = sw;
      canvas.height = sh;
      const ctx = canvas.getContext("2d");
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(bitmap, 0, 0, sw, sh);
      blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
      if (blob && blob.size <= budget) break;
      scale *= 0.75;
    }
    bitmap.close();
    const why = tooBig ? `${mb(file.size)}, over the service's ${mb(limits.max_body_bytes)} limit`
      : `${mp(w * h)}, over the service's ${mp(limits.max_pixels)} limit`;
    const note = `Your photo (${w}×${h} px, ${why}) was scaled down in this browser to ${sw}×${sh} px ` +
      `(${mb(blob.size)}) before it was sent. The boxes are drawn on your original photo.`;
    return { blob, original: { width: w, height: h }, note };
  }

  // Boxes and landmarks of a result on the scaled photo, mapped onto the original.
  function mapToOriginal(result, original) {
    const fx = original.width / result.image.width;
    const fy = original.height / result.image.height;
    const sent = { ...result.image };
    const point = ([x, y]) => [Math.round(x * fx * 10) / 10, Math.round(y * fy * 10) / 10];
    return {
      ...result,
      image: { ...original },
      faces: result.faces.map((f) => ({
        ...f,
        box: { x: Math.round(f.box.x * fx), y: Math.round(f.box.y * fy), width: Math.round(f.box.width * fx),
          height: Math.round(f.box.height * fy) },
        landmarks: Object.fromEntries(Object.entries(f.landmarks).map(([k, v]) => [k, point(v)])),
        quality: { ...f.quality, size: Math.round(f.quality.size * Math.min(fx, fy)) },
      })),
      scaled_in_browser: { sent, factor: Math.round(fx * 1e4) / 1e4 },
    };
  }

  // ------------------------------------------------------------------------------------------- analysis
  async function analyze(file, name) {
    if (state.busy) return;
    state.busy = true;
    clearError();
    els.result.hidden = true;
    els.resizeNote.hidden = true;
    const params = queryParams();
    const started = performance.now();
    try {
      let prepared;
      try {
        setStatus(`Reading ${name}…`);
        prepared = await prepare(file);
      } catch (err) {
        showError(err.message);
        return;
      }
      setStatus(`Analysing ${name}…`);
      let response;
      try {
        response = await postImage("v1/analyze", prepared.blob, name, params);
      } catch (_) {
        showError("Could not reach the server. Check the connection and try again.");
        return;
      }
      if (!response.ok) {
        showError(await describeError(response, () => analyze(file, name)));
        return;
      }
      let result = await response.json();
      const ms = performance.now() - started;
      if (prepared.original) {
        result = mapToOriginal(result, prepared.original);
        els.resizeNote.textContent = prepared.note;
        els.resizeNote.hidden = false;
      }
      state.last = { result, file, sent: prepared.blob, name, params };
      await showPhoto(file, params);
      render(result, name, ms);
      setStatus("");
    } finally {
      state.busy = false;
    }
  }

  function takeFile(file) {
    if (!file) return;
    analyze(file, file.name || "photo");
  }

  // ---------------------------------------------------------------------------------------- downloads
  function download(blob, filename) {
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = filename;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
  window.emotionApi.download = download;
  const stem = (name) => name.replace(/\.[^.]+$/, "") || "photo";

  els.downloadJson.addEventListener("click", () => {
    if (!state.last) return;
    const text = JSON.stringify(state.last.result, null, 2);
    download(new Blob([text], { type: "application/json" }), `${stem(state.last.name)}.emotions.json`);
  });

  els.downloadAnnotated.addEventListener("click", async () => {
    if (!state.last) return;
    setStatus("Drawing the annotated image…");
    try {
      const response = await postImage("v1/annotate", state.last.sent, state.last.name, state.last.params);
      if (!response.ok) {
        showError(await describeError(response));
        return;
      }
      download(await response.blob(), `${stem(state.last.name)}.annotated.jpg`);
      setStatus("");
    } catch (_) {
      showError("Could not reach the server. Check the connection and try again.");
    }
  });

  // ---------------------------------------------------------------------------------------------- input
  els.file.addEventListener("change", () => {
    takeFile(els.file.files && els.file.files[0]);
    els.file.value = "";
  });

  els.drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    els.drop.classList.add("dragging");
  });
  els.drop.addEventListener("dragleave", () => els.drop.classList.remove("dragging"));
  els.drop.addEventListener("drop", (event) => {
    event.preventDefault();
    els.drop.classList.remove("dragging");
    takeFile(event.dataTransfer && event.dataTransfer.files[0]);
  });
  els.drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      els.file.click();
    }
  });
  document.addEventListener("paste", (event) => {
    const items = (event.clipboardData && event.clipboardData.files) || [];
    if (items.length) takeFile(items[0]);
  });

  els.keyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = els.apiKey.value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    els.apiKey.value = "";
    els.keyPanel.hidden = true;
    clearError();
    showKeyState();
    if (!(await loadModels())) return; // refused: the form is open again, the retry still waits
    const retry = state.retry;
    state.retry = null;
    if (retry) retry();
  });
  els.keyForget.addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    showKeyState();
  });
  showKeyState();

  // ---------------------------------------------------------------------------------------------- webcam
  function grabFrame(width) {
    const { videoWidth: w, videoHeight: h } = els.video;
    if (!w || !h) return Promise.resolve(null);
    const scale = Math.min(1, width / w);
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(w * scale);
    canvas.height = Math.round(h * scale);
    canvas.getContext("2d").drawImage(els.video, 0, 0, canvas.width, canvas.height);
    return new Promise((resolve) => canvas.toBlob((blob) => resolve(blob && { blob, scale }), "image/jpeg", 0.85));
  }

  function drawLive(result, scale) {
    const canvas = els.cameraOverlay;
    canvas.width = els.video.videoWidth;
    canvas.height = els.video.videoHeight;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const unit = Math.max(1, canvas.width / 640);
    ctx.font = `bold ${Math.round(14 * unit)}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    result.faces.forEach((face, i) => {
      const colour = COLOURS[face.dominant_emotion] || "#ffffff";
      const b = face.box;
      const [x, y, w, h] = [b.x / scale, b.y / scale, b.width / scale, b.height / scale];
      ctx.lineWidth = 3 * unit;
      ctx.strokeStyle = colour;
      ctx.strokeRect(x, y, w, h);
      const text = `${i + 1} ${face.dominant_emotion} ${pct(face.emotions[face.dominant_emotion])}`;
      const tw = ctx.measureText(text).width + 8 * unit;
      const th = 20 * unit;
      const ty = y - th >= 0 ? y - th : y;
      ctx.fillStyle = colour;
      ctx.fillRect(x, ty, tw, th);
      ctx.fillStyle = textOn(colour);
      ctx.fillText(text, x + 4 * unit, ty + 3 * unit);
    });
    canvas.dataset.faces = String(result.faces.length);
  }

  // Live mode: one frame in flight at a time, at most LIVE_FPS a second; the rate shown is what came back.
  async function runLive(live) {
    const interval = 1000 / LIVE_FPS;
    while (state.live === live) {
      const started = performance.now();
      const frame = await grabFrame(LIVE_WIDTH);
      if (frame) {
        try {
          const response = await postImage("v1/analyze", frame.blob, "webcam.jpg", queryParams());
          if (state.live !== live) break;
          if (response.ok) {
            const result = await response.json();
            drawLive(result, frame.scale);
            live.frames += 1;
            live.done.push(performance.now());
            live.latency.push(performance.now() - started);
            showLiveStats(live, result.faces.length);
          } else if (response.status === 429) {
            await sleep(1000); // busy: back off, then carry on
          } else {
            showError(await describeError(response));
            stopLive();
            break;
          }
        } catch (_) {
          showError("Could not reach the server. Check the connection and try again.");
          stopLive();
          break;
        }
      }
      await sleep(Math.max(0, interval - (performance.now() - started)));
    }
  }

  function showLiveStats(live, faces) {
    const now = performance.now();
    live.done = live.done.filter((t) => now - t <= 3000);
    live.latency = live.latency.slice(-10);
    const span = live.done.length > 1 ? (live.done[live.done.length - 1] - live.done[0]) / 1000 : 0;
    const fps = span > 0 ? (live.done.length - 1) / span : 0;
    const latency = live.latency.reduce((a, b) => a + b, 0) / live.latency.length;
    els.liveStats.textContent = `Live: ${fps.toFixed(1)} frames/s analysed · ${Math.round(latency)} ms per frame · ` +
      `${faces} face${faces === 1 ? "" : "s"}`;
    els.camera.dataset.frames = String(live.frames);
    els.camera.dataset.fps = fps.toFixed(2);
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function startLive() {
    clearError();
    state.live = { frames: 0, done: [], latency: [] };
    els.live.textContent = "Stop live";
    els.live.setAttribute("aria-pressed", "true");
    els.liveStats.textContent = "Live: starting…";
    runLive(state.live);
  }

  function stopLive() {
    state.live = null;
    els.live.textContent = "Start live";
    els.live.setAttribute("aria-pressed", "false");
    const ctx = els.cameraOverlay.getContext("2d");
    ctx.clearRect(0, 0, els.cameraOverlay.width, els.cameraOverlay.height);
  }

  function stopCamera() {
    stopLive();
    if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
    state.stream = null;
    els.video.srcObject = null;
    els.camera.hidden = true;
  }

  els.cameraButton.addEventListener("click", async () => {
    clearError();
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError("This browser cannot use a webcam here (it needs a secure HTTPS page or localhost).");
      return;
    }
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false });
    } catch (err) {
      showError(`The webcam is not available: ${err && err.message ? err.message : "permission denied"}.`);
      return;
    }
    els.video.srcObject = state.stream;
    els.camera.hidden = false;
  });

  els.live.addEventListener("click", () => (state.live ? stopLive() : startLive()));

  els.snap.addEventListener("click", async () => {
    const frame = await grabFrame(4096);
    if (!frame) {
      showError("The webcam has not started yet; try again in a moment.");
      return;
    }
    analyze(frame.blob, "webcam snapshot.jpg");
  });
  els.cameraClose.addEventListener("click", stopCamera);

  // -------------------------------------------------------------------------------------------- models
  // The classifiers and limits; also how the page learns on load that the API needs a key. False when the
  // key was refused (the key form is open again).
  async function loadModels() {
    try {
      const response = await fetch("v1/models", { headers: apiHeaders() });
      if (needsKey(response)) {
        askForKey(null);
        return false;
      }
      if (!response.ok) return true;
      const info = await response.json();
      if (info.limits) {
        state.limits = info.limits;
        els.sizeLimit.textContent = `${mb(info.limits.max_body_bytes)} (larger photos are scaled down here first)`;
      }
      const current = els.classifier.value;
      const options = [new Option(`server default (${info.classifier})`, "")];
      for (const m of info.models) {
        if (m.role !== "classifier") continue;
        state.classifierNames[m.version] = m.name;
        // an fp32 form (form_of) runs by EMOTION_CLASSIFIER_PRECISION, not as a classifier of its own
        if (m.available && !m.form_of) options.push(new Option(`${m.name} (${m.labels.length} emotions)`, m.name));
      }
      els.classifier.replaceChildren(...options);
      els.classifier.value = current;
      window.emotionApi.models = info; // for jobs.js, which also hears the event when the list changes
      document.dispatchEvent(new CustomEvent("emotion:models", { detail: info }));
    } catch (_) { /* the page works without the list */ }
    return true;
  }
  loadModels();
})();
