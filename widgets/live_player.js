// musicgen-nb live player: plays a stream's chunks back to back with the Web Audio API
// while the kernel is still generating, then holds the final one-pass audio for replay
// and download. Chunks arrive as custom messages with the PCM in a binary buffer
// (float32, channel after channel). Written in the anywidget ESM style.
//
// The start rule mirrors musicgen_nb.streaming.should_start: start (or resume after a
// stall) at clip position `pos` when the buffered audio outlasts the wait for one more
// chunk and the audio before the last chunk outlasts the remaining generation time.

function shouldStart({ pos, received, total, remaining, piece, final, margin }) {
  if (final) return true;
  if (received <= pos || !Number.isFinite(remaining)) return false;
  if (remaining <= 0) return received - pos >= piece;
  const rate = Math.max(total - received, 1e-9) / remaining;
  const ahead = received - pos;
  return ahead >= Math.max((margin * piece) / rate, 1.5 * piece) && total - piece - pos >= margin * remaining;
}

// One state per widget model, shared by its views. anywidget may hand initialize()
// and render() different wrappers of one model, so the state is keyed by a uid trait.
const STATES = new Map();

function fmt(s) {
  return `${(s || 0).toFixed(1)} s`;
}

function initialize({ model }) {
  // Model-level state: chunks may arrive before (or without) a view.
  const st = {
    chunks: new Map(), // index -> {index, offset, samples, channels, data: Float32Array[], final}
    meta: [], // per chunk: {index, offset, samples, remaining, arrivedMs}
    received: 0, // samples received without holes from 0
    finalIndex: -1,
    ctx: null,
    playing: false,
    started: false,
    startedAtMs: null, // performance.now() when playback first started
    firstChunkMs: null,
    base: 0, // ctx time at which clip sample `baseSample` plays
    baseSample: 0,
    next: 0, // next chunk index to schedule
    scheduled: [], // {index, offset, samples, when, duration}
    sources: [],
    pos: 0, // clip sample where playback (re)starts after a stall
    stalls: 0,
    replaced: false,
    finalUrl: "",
    status: "waiting",
    lastRemaining: Infinity,
    lastArrivalMs: 0,
    views: new Set(),
  };
  STATES.set(model.get("uid"), st);
  const sr = () => model.get("sample_rate");

  function ensureContext() {
    if (st.ctx) return st.ctx;
    const Ctx = window.AudioContext || window.webkitAudioContext;
    try {
      st.ctx = new Ctx({ sampleRate: sr() });
    } catch (e) {
      st.ctx = new Ctx(); // the browser resamples each buffer
    }
    return st.ctx;
  }

  function redraw() {
    for (const v of st.views) v();
  }

  function report() {
    model.set("stalls", st.stalls);
    model.set("started_after", st.startedAtMs == null ? -1 : (st.startedAtMs - st.firstChunkMs) / 1000);
    model.set("front_state", st.status);
    model.save_changes();
  }

  function remainingNow() {
    return Math.max(0, st.lastRemaining - (performance.now() - st.lastArrivalMs) / 1000);
  }

  function trySchedule() {
    const ctx = st.ctx;
    if (!st.playing || !ctx) return;
    while (st.chunks.has(st.next)) {
      const c = st.chunks.get(st.next);
      if (c.offset + c.samples <= st.baseSample) { st.next++; continue; } // before a resume point
      const when = st.base + (c.offset - st.baseSample) / sr();
      if (when < ctx.currentTime + 0.003) { stall(); return; } // too late to join seamlessly
      if (c.samples > 0) {
        const buf = ctx.createBuffer(c.channels, c.samples, sr());
        for (let ch = 0; ch < c.channels; ch++) buf.copyToChannel(c.data[ch], ch);
        const src = ctx.createBufferSource();
        src.buffer = buf;
        src.connect(ctx.destination);
        src.start(when);
        st.sources.push(src);
        src.onended = () => { st.sources = st.sources.filter((x) => x !== src); };
      }
      st.scheduled.push({ index: c.index, offset: c.offset, samples: c.samples, when, duration: c.samples / sr() });
      st.next++;
    }
  }

  function scheduledEnd() {
    const last = st.scheduled[st.scheduled.length - 1];
    return last ? last.when + last.duration : st.base;
  }

  function stall() {
    // The scheduled audio ran out before the next chunk: wait, and count it.
    const last = st.scheduled[st.scheduled.length - 1];
    st.pos = last ? last.offset + last.samples : st.pos;
    st.playing = false;
    st.stalls += 1;
    st.status = "buffering";
    report();
    redraw();
  }

  function maybeStart() {
    if (st.playing || st.received <= st.pos && st.finalIndex < 0) return;
    const finalIn = st.finalIndex >= 0 && st.received >= st.totalSamples;
    if (finalIn && st.pos >= st.received) { finish(); return; }
    const ok = shouldStart({
      pos: st.pos / sr(), received: st.received / sr(), total: model.get("total"),
      remaining: remainingNow(), piece: model.get("piece"), final: finalIn,
      margin: model.get("margin"),
    });
    if (!ok) return;
    const ctx = ensureContext();
    if (ctx.state === "suspended") ctx.resume();
    st.playing = true;
    st.base = ctx.currentTime + 0.05;
    st.baseSample = st.pos;
    if (!st.started) { st.started = true; st.startedAtMs = performance.now(); }
    st.status = "playing";
    // Resume at the chunk holding `pos`.
    st.next = 0;
    while (st.chunks.has(st.next) && st.chunks.get(st.next).offset + st.chunks.get(st.next).samples <= st.pos && st.chunks.get(st.next).samples > 0) st.next++;
    trySchedule();
    report();
    redraw();
  }

  function finish() {
    // Live playback is over: the final one-pass audio replaces the chunks.
    if (!st.finalUrl || st.replaced) return;
    if (st.playing && st.ctx && st.ctx.currentTime < scheduledEnd()) return;
    st.playing = false;
    st.replaced = true;
    for (const c of st.chunks.values()) c.data = null;
    st.status = model.get("stopped") ? "stopped" : "done";
    report();
    redraw();
  }

  function tick() {
    if (st.playing && st.ctx) {
      const end = scheduledEnd();
      const all = st.finalIndex >= 0 && st.next > st.finalIndex;
      if (all && st.ctx.currentTime >= end) { st.playing = false; st.pos = st.received; finish(); }
      else if (!all && st.ctx.currentTime >= end - 0.002) stall();
    } else {
      maybeStart();
      finish();
    }
    redraw();
  }
  st.timer = setInterval(tick, 20);

  function onChunk(msg, buffers) {
    if (st.chunks.has(msg.index)) return; // a resend
    const now = performance.now();
    if (st.firstChunkMs == null) st.firstChunkMs = now;
    const raw = buffers[0];
    const view = raw instanceof DataView ? raw : new DataView(raw.buffer || raw);
    const all = new Float32Array(view.buffer, view.byteOffset, view.byteLength / 4);
    const data = [];
    for (let ch = 0; ch < msg.channels; ch++) data.push(all.slice(ch * msg.samples, (ch + 1) * msg.samples));
    st.chunks.set(msg.index, { ...msg, data });
    st.meta.push({ index: msg.index, offset: msg.offset, samples: msg.samples, remaining: msg.remaining, arrivedMs: now });
    while (true) { // contiguous end
      const c = [...st.chunks.values()].find((x) => x.offset === st.received && x.samples > 0);
      if (!c) break;
      st.received += c.samples;
    }
    st.lastRemaining = msg.remaining;
    st.lastArrivalMs = now;
    if (msg.final) { st.finalIndex = msg.index; st.totalSamples = msg.offset + msg.samples; }
    if (st.status === "waiting") st.status = "buffering";
    if (st.playing) trySchedule(); else maybeStart();
    redraw();
  }

  model.on("msg:custom", (msg, buffers) => {
    if (msg.type === "chunk") onChunk(msg, buffers);
    if (msg.type === "reset") {
      for (const s of st.sources) { try { s.stop(); } catch (e) { /* already ended */ } }
      Object.assign(st, { chunks: new Map(), meta: [], received: 0, finalIndex: -1, playing: false,
        started: false, startedAtMs: null, firstChunkMs: null, next: 0, scheduled: [], sources: [],
        pos: 0, stalls: 0, replaced: false, status: "waiting", lastRemaining: Infinity });
      report();
      redraw();
    }
  });
  model.on("change:final_url", () => { st.finalUrl = model.get("final_url"); finish(); redraw(); });
  st.finalUrl = model.get("final_url");
  model.send({ type: "ready" }); // the kernel resends what this front end may have missed
  return () => { clearInterval(st.timer); STATES.delete(model.get("uid")); };
}

// An element with a class and either text or children.
function node(tag, className = "", content = []) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (typeof content === "string") e.textContent = content;
  else e.append(...content);
  return e;
}

function render({ model, el }) {
  const st = STATES.get(model.get("uid"));
  el.mgnbLive = st; // the front end's state, read by tests
  el.classList.add("mgnb-live");
  const title = node("div", "mgnb-live-title");
  const made = node("div", "mgnb-live-made");
  const played = node("div", "mgnb-live-played");
  const bar = node("div", "mgnb-live-bar", [made, played]);
  const status = node("span", "mgnb-live-status");
  const info = node("span", "mgnb-live-info");
  const stop = node("button", "mgnb-live-stop", "Stop");
  stop.onclick = () => model.send({ type: "stop" });
  const enable = node("button", "mgnb-live-enable", "Enable audio");
  enable.onclick = () => st.ctx && st.ctx.resume();
  const row = node("div", "mgnb-live-row", [status, info, enable, stop]);
  const audio = node("audio");
  audio.controls = true;
  audio.preload = "auto";
  const link = node("a", "mgnb-live-download", "download");
  const final = node("div", "mgnb-live-final", [audio, link]);
  el.append(title, bar, row, final);

  function draw() {
    const sr = model.get("sample_rate");
    const total = Math.max(model.get("total"), 1e-9);
    const received = st.received / sr;
    let pos = st.pos / sr;
    if (st.playing && st.ctx) pos = st.baseSample / sr + Math.max(0, st.ctx.currentTime - st.base);
    if (st.replaced) pos = received;
    made.style.width = `${Math.min(100, (100 * received) / total)}%`;
    played.style.width = `${Math.min(100, (100 * Math.min(pos, received)) / total)}%`;
    title.textContent = model.get("label");
    const state = st.status;
    el.dataset.state = state;
    status.textContent = state;
    status.className = `mgnb-live-status mgnb-live-${state}`;
    const rate = model.get("steps_per_s");
    const parts = [`${fmt(received)} of ${fmt(model.get("total"))} made`];
    if (rate > 0 && !st.replaced) parts.push(`${rate.toFixed(1)} steps/s`);
    parts.push(`${st.stalls} stall${st.stalls === 1 ? "" : "s"}`);
    info.textContent = parts.join(" · ");
    enable.style.display = st.ctx && st.ctx.state === "suspended" ? "" : "none";
    stop.style.display = model.get("running") ? "" : "none";
    const url = model.get("final_url");
    const held = url && url !== "data:,"; // "data:," = the final audio is shown elsewhere
    final.style.display = held ? "" : "none";
    if (held && audio.getAttribute("src") !== url) {
      audio.src = url;
      link.href = url;
      link.download = model.get("final_name") || "musicgen.wav";
    }
  }
  st.views.add(draw);
  for (const name of ["label", "total", "final_url", "running", "steps_per_s"]) model.on(`change:${name}`, draw);
  draw();
  return () => st.views.delete(draw);
}

export default { initialize, render };
