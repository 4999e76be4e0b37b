// The photo page: choose / drop / paste / snap a photo → POST v1/analyze → boxes on the photo, bars per face.
// Self-contained (no libraries, nothing loaded from elsewhere). URLs are relative so the page also works
// behind an API Gateway stage prefix. jobs.js (video jobs) can reuse window.emotionApi.
(() => {
  "use strict";

  // Same colours as the server's annotated images (emotion/core/annotate.py, converted from BGR).
  const COLOURS = {
    happiness: "#3cc850", neutral: "#c8c8c8", surprise: "#ffc800", sadness: "#2878dc",
    anger: "#e62828", disgust: "#5a8c28", fear: "#a03cb4", contempt: "#c85078",
  };
  const KEY_STORAGE = "emotion-api-key";
  const $ = (id) => document.getElementById(id);

  const els = {
    drop: $("drop-zone"), file: $("file-input"), cameraButton: $("camera-button"), camera: $("camera"),
    video: $("camera-video"), snap: $("snap-button"), cameraClose: $("camera-close"), options: $("options"),
    classifier: $("classifier"), minFace: $("min-face"), apiKey: $("api-key"), status: $("status"),
    error: $("error"), result: $("result"), summary: $("summary"), stage: $("stage"), photo: $("photo"),
    overlay: $("overlay"), caption: $("caption"), faces: $("faces"),
  };

  let photoUrl = null;
  let stream = null;
  let busy = false;

  // ---------------------------------------------------------------------------------------- API helpers
  function apiHeaders() {
    const key = (els.apiKey && els.apiKey.value.trim()) || sessionStorage.getItem(KEY_STORAGE) || "";
    return key ? { "x-api-key": key } : {};
  }

  const FRIENDLY = {
    unsupported_media_type: "That file is not a photo the service can read. Use a JPEG, PNG, WebP, GIF, BMP or TIFF image.",
    undecodable_image: "The photo could not be read: the file looks damaged or incomplete.",
    empty_input: "The file is empty: there is no photo in it.",
    image_too_large: "The photo is too large.",
    image_too_small: "The photo is too small to find faces in.",
    unauthorized: "This server needs an API key. Enter it under Options, then try again.",
    bad_parameter: "An option is not valid.",
    model_unavailable: "The server is not ready: its models are missing.",
    too_many_requests: "The server is busy. Wait a moment and try again.",
  };

  // A sentence for a failed response: {"error": {"code", "message"}} when the service answered it.
  async function describeError(response) {
    let code = "";
    let message = "";
    try {
      const body = await response.json();
      code = (body && body.error && body.error.code) || "";
      message = (body && body.error && body.error.message) || (body && body.message) || "";
    } catch (_) { /* not JSON (e.g. a gateway page) */ }
    if (response.status === 401 || response.status === 403) code = code || "unauthorized";
    if (response.status === 413) code = code || "image_too_large";
    const friendly = FRIENDLY[code];
    // The service's own message adds facts (sizes, limits, which option) except for these plain cases.
    const plain = ["unsupported_media_type", "empty_input", "unauthorized"].includes(code);
    const detail = message && !plain ? ` (${message})` : "";
    if (friendly) return friendly + detail;
    return `The server could not analyse this file: ${response.status} ${response.statusText || ""}${detail}`.trim();
  }

  window.emotionApi = { headers: apiHeaders, describeError };

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

  function pct(p) { return `${Math.round(p * 100)}%`; }

  function faceCard(face, index) {
    const colour = COLOURS[face.dominant_emotion] || "#ffffff";
    const li = document.createElement("li");
    li.className = "face-card";
    li.style.setProperty("--box", colour);
    li.dataset.emotion = face.dominant_emotion;

    const h3 = document.createElement("h3");
    h3.textContent = `Face ${index + 1}: ${face.dominant_emotion} ${pct(face.emotions[face.dominant_emotion])}`;
    li.appendChild(h3);

    const meta = document.createElement("p");
    meta.className = "meta";
    const b = face.box;
    meta.textContent = `${b.width}×${b.height} px at (${b.x}, ${b.y}); detector confidence ${pct(face.confidence)}`;
    li.appendChild(meta);

    const bars = document.createElement("div");
    bars.className = "bars";
    bars.setAttribute("role", "list");
    bars.setAttribute("aria-label", `emotion probabilities of face ${index + 1}`);
    const entries = Object.entries(face.emotions).sort((a, c) => c[1] - a[1]);
    for (const [name, p] of entries) {
      const label = document.createElement("span");
      label.className = "label";
      label.setAttribute("role", "listitem");
      label.textContent = name;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.setAttribute("aria-hidden", "true");
      const fill = document.createElement("i");
      fill.style.width = `${Math.max(0, Math.min(100, p * 100)).toFixed(1)}%`;
      fill.style.setProperty("--box", COLOURS[name] || colour);
      bar.appendChild(fill);
      const value = document.createElement("span");
      value.className = "pct";
      value.textContent = pct(p);
      label.setAttribute("aria-label", `${name} ${pct(p)}`);
      bars.append(label, bar, value);
    }
    li.appendChild(bars);
    return li;
  }

  function faceBox(face, index, image) {
    const colour = COLOURS[face.dominant_emotion] || "#ffffff";
    const box = document.createElement("div");
    box.className = "face-box";
    const b = face.box;
    box.style.left = `${(100 * b.x) / image.width}%`;
    box.style.top = `${(100 * b.y) / image.height}%`;
    box.style.width = `${(100 * b.width) / image.width}%`;
    box.style.height = `${(100 * b.height) / image.height}%`;
    box.style.setProperty("--box", colour);
    if (b.y < image.height * 0.06) box.classList.add("at-top");
    const tag = document.createElement("span");
    tag.textContent = `${index + 1} ${face.dominant_emotion}`;
    box.appendChild(tag);
    return box;
  }

  function render(result, name, ms) {
    const faces = [...result.faces].sort((a, b) => a.box.x - b.box.x);
    els.stage.style.aspectRatio = `${result.image.width} / ${result.image.height}`;
    els.overlay.replaceChildren(...faces.map((f, i) => faceBox(f, i, result.image)));
    els.faces.replaceChildren(...faces.map(faceCard));
    const n = faces.length;
    const server = result.timings_ms && result.timings_ms.total;
    els.summary.textContent = n === 0
      ? "No faces found. Try a larger, well-lit photo with faces looking at the camera."
      : `${n} face${n === 1 ? "" : "s"} found.`;
    els.caption.textContent = `${name}: ${result.image.width}×${result.image.height} px, analysed in ` +
      `${server != null ? Math.round(server) : "?"} ms on the server (${Math.round(ms)} ms round trip); ` +
      `classifier ${result.models.classifier}.`;
    els.result.hidden = false;
    els.result.dataset.faces = String(n);
  }

  // Show the photo itself; formats the browser cannot display (e.g. TIFF) come back as a JPEG from v1/annotate.
  function showPhoto(blob, query) {
    return new Promise((resolve) => {
      if (photoUrl) URL.revokeObjectURL(photoUrl);
      photoUrl = URL.createObjectURL(blob);
      els.photo.onload = () => resolve();
      els.photo.onerror = async () => {
        els.photo.onerror = null;
        try {
          const form = new FormData();
          form.append("image", blob, "photo");
          const response = await fetch(`v1/annotate?${query}`, { method: "POST", body: form, headers: apiHeaders() });
          if (response.ok) {
            URL.revokeObjectURL(photoUrl);
            photoUrl = URL.createObjectURL(await response.blob());
            els.photo.src = photoUrl;
          }
        } catch (_) { /* keep the boxes without the photo */ }
        resolve();
      };
      els.photo.src = photoUrl;
    });
  }

  // ------------------------------------------------------------------------------------------- analysis
  async function analyze(blob, name) {
    if (busy) return;
    busy = true;
    clearError();
    els.result.hidden = true;
    setStatus(`Analysing ${name}…`);
    const params = new URLSearchParams();
    if (els.classifier.value) params.set("classifier", els.classifier.value);
    const minFace = els.minFace.value.trim();
    if (minFace) params.set("min_face", minFace);
    const form = new FormData();
    form.append("image", blob, name);
    const started = performance.now();
    try {
      let response;
      try {
        response = await fetch(`v1/analyze?${params}`, { method: "POST", body: form, headers: apiHeaders() });
      } catch (_) {
        showError("Could not reach the server. Check the connection and try again.");
        return;
      }
      if (!response.ok) {
        if (response.status === 401) els.options.open = true;
        showError(await describeError(response));
        return;
      }
      const result = await response.json();
      const ms = performance.now() - started;
      await showPhoto(blob, params.toString());
      render(result, name, ms);
      setStatus("");
    } finally {
      busy = false;
    }
  }

  function takeFile(file) {
    if (!file) return;
    analyze(file, file.name || "photo");
  }

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

  els.apiKey.value = sessionStorage.getItem(KEY_STORAGE) || "";
  els.apiKey.addEventListener("change", () => {
    const key = els.apiKey.value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key); else sessionStorage.removeItem(KEY_STORAGE);
    loadModels();
  });

  // ---------------------------------------------------------------------------------------------- webcam
  function stopCamera() {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
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
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false });
    } catch (err) {
      showError(`The webcam is not available: ${err && err.message ? err.message : "permission denied"}.`);
      return;
    }
    els.video.srcObject = stream;
    els.camera.hidden = false;
  });

  els.snap.addEventListener("click", () => {
    const { videoWidth: w, videoHeight: h } = els.video;
    if (!w || !h) {
      showError("The webcam has not started yet; try again in a moment.");
      return;
    }
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    canvas.getContext("2d").drawImage(els.video, 0, 0, w, h);
    canvas.toBlob((blob) => blob && analyze(blob, "webcam snapshot.jpg"), "image/jpeg", 0.92);
  });
  els.cameraClose.addEventListener("click", stopCamera);

  // -------------------------------------------------------------------------------------------- models
  async function loadModels() {
    try {
      const response = await fetch("v1/models", { headers: apiHeaders() });
      if (!response.ok) return;
      const info = await response.json();
      const current = els.classifier.value;
      const options = [new Option(`server default (${info.classifier})`, "")];
      for (const m of info.models) {
        if (m.role === "classifier" && m.available) options.push(new Option(`${m.name} (${m.labels.length} emotions)`, m.name));
      }
      els.classifier.replaceChildren(...options);
      els.classifier.value = current;
    } catch (_) { /* the page works without the list */ }
  }
  loadModels();
})();
