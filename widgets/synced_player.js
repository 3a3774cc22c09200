// musicgen-nb synced player: an <audio> element with a token grid and a
// spectrogram drawn on canvases, and a playhead that follows playback.
// Clicking either canvas seeks. Written in the anywidget ESM style.

const PALETTE = [
  [68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37],
];

function decodeBase64(b64) {
  const bin = atob(b64 || "");
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function colour(value, max) {
  // Map a value in [0, max] onto the palette (viridis-like), linearly interpolated.
  const x = Math.max(0, Math.min(1, value / Math.max(1, max))) * (PALETTE.length - 1);
  const i = Math.floor(x);
  const j = Math.min(PALETTE.length - 1, i + 1);
  const f = x - i;
  return PALETTE[i].map((c, k) => Math.round(c + f * (PALETTE[j][k] - c)));
}

function paintImage(canvas, rows, cols, valueAt, max) {
  canvas.width = Math.max(1, cols);
  canvas.height = Math.max(1, rows);
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(canvas.width, canvas.height);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const [red, green, blue] = colour(valueAt(r, c), max);
      const o = 4 * (r * cols + c);
      img.data[o] = red;
      img.data[o + 1] = green;
      img.data[o + 2] = blue;
      img.data[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

function render({ model, el }) {
  el.classList.add("mgnb-player");
  const title = document.createElement("div");
  title.className = "mgnb-player-title";
  const audio = document.createElement("audio");
  audio.controls = true;
  audio.preload = "auto";
  audio.className = "mgnb-player-audio";

  const stack = document.createElement("div");
  stack.className = "mgnb-player-stack";
  const makeLane = (label) => {
    const lane = document.createElement("div");
    lane.className = "mgnb-player-lane";
    const name = document.createElement("span");
    name.className = "mgnb-player-lane-label";
    name.textContent = label;
    const canvas = document.createElement("canvas");
    canvas.className = "mgnb-player-canvas";
    lane.append(name, canvas);
    stack.append(lane);
    return { lane, canvas };
  };
  const grid = makeLane("tokens");
  const spec = makeLane("spectrogram");
  const head = document.createElement("div");
  head.className = "mgnb-player-playhead";
  stack.append(head);
  const time = document.createElement("div");
  time.className = "mgnb-player-time";
  const empty = document.createElement("div");
  empty.className = "mgnb-player-placeholder";
  empty.textContent = "No audio yet: press Generate.";
  el.append(empty, title, audio, stack, time);

  function drawGrid() {
    const k = model.get("num_codebooks");
    const frames = model.get("frames");
    const codes = new Uint16Array(decodeBase64(model.get("codes_b64")).buffer);
    grid.lane.style.display = frames > 0 ? "" : "none";
    if (!frames) return;
    paintImage(grid.canvas, k, frames, (r, c) => codes[r * frames + c], model.get("codebook_size"));
    grid.canvas.style.height = `${Math.max(32, 14 * k)}px`;
  }

  function drawSpectrogram() {
    const [bins, cols] = model.get("spec_shape");
    const data = decodeBase64(model.get("spec_b64"));
    spec.lane.style.display = cols > 0 ? "" : "none";
    if (!cols) return;
    // Low frequencies at the bottom: row r of the canvas is mel bin (bins - 1 - r).
    paintImage(spec.canvas, bins, cols, (r, c) => data[(bins - 1 - r) * cols + c], 255);
  }

  function loadAudio() {
    const url = model.get("audio_url");
    el.classList.toggle("mgnb-player-empty", !url);
    if (url && audio.src !== url) audio.src = url;
    title.textContent = model.get("label");
    placeHead();
  }

  function duration() {
    return model.get("duration") || audio.duration || 0;
  }

  function placeHead() {
    const d = duration();
    const t = audio.currentTime || 0;
    head.style.left = d > 0 ? `${(100 * Math.min(t, d)) / d}%` : "0%";
    head.style.display = d > 0 ? "" : "none";
    time.textContent = d > 0 ? `${t.toFixed(2)} s / ${d.toFixed(2)} s` : "";
  }

  let lastSync = 0;
  function syncTime(force) {
    const now = performance.now();
    if (!force && now - lastSync < 250) return; // at most 4 updates per second
    lastSync = now;
    model.set("current_time", audio.currentTime || 0);
    model.set("playing", !audio.paused);
    model.save_changes();
  }

  function seek(event) {
    const rect = stack.getBoundingClientRect();
    const x = Math.max(0, Math.min(1, (event.clientX - rect.left) / rect.width));
    audio.currentTime = x * duration();
    placeHead();
    syncTime(true);
  }

  let frame = null;
  function tick() {
    placeHead();
    if (!audio.paused) frame = requestAnimationFrame(tick);
  }

  audio.addEventListener("play", () => { syncTime(true); frame = requestAnimationFrame(tick); });
  audio.addEventListener("pause", () => { cancelAnimationFrame(frame); placeHead(); syncTime(true); });
  audio.addEventListener("timeupdate", () => { placeHead(); syncTime(false); });
  audio.addEventListener("seeked", () => { placeHead(); syncTime(true); });
  audio.addEventListener("loadedmetadata", placeHead);
  stack.addEventListener("click", seek);

  model.on("change:audio_url", loadAudio);
  model.on("change:label", () => { title.textContent = model.get("label"); });
  model.on("change:codes_b64", drawGrid);
  model.on("change:spec_b64", drawSpectrogram);
  model.on("change:current_time", () => {
    const t = model.get("current_time");
    if (Math.abs((audio.currentTime || 0) - t) > 0.25) { audio.currentTime = t; placeHead(); }
  });

  drawGrid();
  drawSpectrogram();
  loadAudio();
  return () => cancelAnimationFrame(frame);
}

export default { render };
