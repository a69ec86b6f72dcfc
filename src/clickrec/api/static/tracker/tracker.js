/*! clickrec tracker: page views, clicks and impressions of recommendations, and engaged time,
 * sent to a clickrec engine's POST /v1/events. Plain ES2017, no dependencies, no build step:
 * the engine serves it at /tracker.js and a site may host this very file. See docs/tracker.md.
 *
 *   <script src="https://engine.example.com/tracker.js" data-key="ck_…" async></script>
 *   clickrec("pageview", {itemId}) · clickrec("identify", userId) · clickrec("consent", true)
 */
(() => {
  "use strict";
  const before = window.clickrec;
  if (before && before.loaded) return; // the script is on the page twice

  const BATCH = 20; // events per request; a full batch goes at once
  const TICK_MS = 1000; // engaged time and impressions are measured once a second
  const FLUSH_TICKS = 5; // otherwise the queue is sent every 5 s
  const MAX_QUEUE = 200; // unsent events kept (the oldest go first)
  const MAX_HELD = 50; // events kept in memory while consent is awaited
  const MAX_TRIES = 10; // sends of one event before it is given up
  const MAX_BACKOFF_MS = 60000;
  const SESSION_IDLE_MS = 30 * 60000; // a new session after 30 idle minutes
  const ACTIVE_MS = 30000; // a reader is engaged this long after their last input
  const SEEN_MS = 1000; // an item is shown once half of it was in view this long
  const QUEUE_KEY = "clickrec:queue"; // sessionStorage: this tab's unsent events
  const SESSION_KEY = "clickrec:session"; // localStorage: {id, at}

  const script = document.currentScript || document.querySelector("script[data-key]");
  const opts = (script && script.dataset) || {};
  const warn = (message) => console.warn(`clickrec: ${message}`);

  // Do Not Track and Global Privacy Control are honoured unless data-respect-dnt="false".
  const dnt =
    opts.respectDnt !== "false" &&
    (["1", "yes"].includes(String(navigator.doNotTrack || window.doNotTrack)) ||
      navigator.globalPrivacyControl === true);
  if (dnt || !opts.key) {
    if (!dnt) warn("no data-key on the script: nothing is sent");
    // Calls are accepted and ignored, so the site needs no branch of its own.
    window.clickrec = Object.assign(() => {}, { loaded: true });
    return;
  }

  // The engine is where the script came from, unless the site hosts it (data-endpoint).
  const engine = opts.endpoint || new URL(script.src, location.href).origin;
  const url = `${engine.replace(/\/+$/, "")}/v1/events`;
  const headers = { Authorization: `Bearer ${opts.key}`, "Content-Type": "application/json" };
  const auto = opts.pageview !== "manual";

  // -- state ---------------------------------------------------------------------------------
  let consent = opts.consent === "required" ? null : true; // null: not given yet
  let stopped = false; // the engine refused the key or origin: nothing more this page
  let user = null;
  let session = null; // {id, at}: in memory when storage is unavailable or not allowed yet
  let item = validId(opts.itemId || meta("clickrec:item"));
  let held = [];
  let queue = []; // [{event, tries}], oldest first
  const inflight = new Set(); // event ids being sent
  let failures = 0;
  let retryAt = 0;
  let ticks = 0;
  let engaged = 0; // seconds visible and active on `item` not yet reported
  let lastInput = Date.now();
  let viewed = false; // the site called pageview itself before the page was ready

  function storage(name) {
    try {
      return window[name];
    } catch (e) {
      return null; // storage blocked by the browser
    }
  }
  const local = storage("localStorage");
  const tab = storage("sessionStorage");

  function load(store, key) {
    try {
      return JSON.parse(store.getItem(key));
    } catch (e) {
      return null;
    }
  }

  function save(store, key, value) {
    if (consent !== true) return; // nothing is stored before consent
    if (value == null) return remove(store, key);
    try {
      store.setItem(key, JSON.stringify(value));
    } catch (e) {
      // full or blocked: memory only
    }
  }

  function remove(store, key) {
    try {
      store.removeItem(key);
    } catch (e) {
      // blocked: nothing was stored
    }
  }

  function meta(name) {
    const tag = document.querySelector(`meta[name="${name}"]`);
    return tag && tag.content;
  }

  function validId(value, max = 256) {
    // The engine's bounds: 1 to `max` characters, no control characters.
    const id = value == null ? "" : String(value).trim();
    return id && id.length <= max && !/[\x00-\x1f\x7f]/.test(id) ? id : null;
  }

  function randomId() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => (b + 256).toString(16).slice(1)).join("");
  }

  function sessionId() {
    const now = Date.now();
    const known = load(local, SESSION_KEY) || session; // another tab may have moved it on
    session = known && known.id && now - known.at < SESSION_IDLE_MS ? known : { id: randomId() };
    session.at = now;
    save(local, SESSION_KEY, session);
    return session.id;
  }

  function newSession() {
    session = null;
    remove(local, SESSION_KEY);
  }

  // -- events --------------------------------------------------------------------------------
  function track(type, itemId, fields) {
    if (stopped || consent === false) return;
    const id = validId(itemId);
    if (!id) return warn(`a ${type} event needs an item id of 1-256 characters`);
    const event = Object.assign(
      { event_id: randomId(), session_id: sessionId(), item_id: id, event_type: type },
      fields
    );
    if (user) event.user_id = user;
    if (consent === null) {
      if (held.length < MAX_HELD) held.push(event);
    } else enqueue(event);
  }

  function enqueue(event) {
    queue.push({ event, tries: 0 });
    if (queue.length > MAX_QUEUE) queue.splice(0, queue.length - MAX_QUEUE);
    persist();
    if (queue.length - inflight.size >= BATCH) flush();
  }

  function persist() {
    save(tab, QUEUE_KEY, queue.length ? queue : null);
  }

  function drop(entries) {
    const gone = new Set(entries);
    queue = queue.filter((q) => !gone.has(q));
    persist();
  }

  // -- sending -------------------------------------------------------------------------------
  // The key travels in the Authorization header, so sendBeacon (which cannot set it) is not
  // used: a keepalive fetch outlives the page the same way. What was not acknowledged stays in
  // sessionStorage and goes again from the next page; the engine drops a repeated event_id.
  function flush(leaving) {
    collectImpressions();
    if (consent !== true || stopped) return;
    const ready = queue.filter((q) => !inflight.has(q.event.event_id));
    if (!ready.length) return;
    if (!leaving && (inflight.size || Date.now() < retryAt || navigator.onLine === false)) return;
    // Leaving: up to three batches at once (keepalive bodies share a 64 KB budget).
    const n = Math.min(ready.length, leaving ? 3 * BATCH : BATCH);
    for (let i = 0; i < n; i += BATCH) send(ready.slice(i, Math.min(i + BATCH, n)));
  }

  function send(batch) {
    for (const q of batch) {
      inflight.add(q.event.event_id);
      q.tries += 1;
    }
    persist();
    fetch(url, {
      method: "POST",
      headers,
      body: JSON.stringify({ events: batch.map((q) => q.event) }),
      keepalive: true,
      credentials: "omit",
    })
      .then((r) => r.status, () => 0) // 0: a network or CORS error
      .then((status) => sent(batch, status));
  }

  function sent(batch, status) {
    for (const q of batch) inflight.delete(q.event.event_id);
    if (status === 0 || status === 408 || status === 429 || status >= 500) {
      failures += 1;
      const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** failures) * (0.5 + Math.random() / 2);
      retryAt = Date.now() + delay;
      drop(batch.filter((q) => q.tries >= MAX_TRIES));
      return;
    }
    failures = 0;
    retryAt = 0;
    drop(batch); // accepted, or refused for good: sending it again would not help
    if (status === 401 || status === 403) {
      warn(`the engine refused the key from this origin (${status}); nothing more is sent`);
      stopped = true;
      queue = [];
      persist();
    } else if (status !== 202) warn(`the engine refused a batch (${status})`);
    else if (queue.length - inflight.size >= BATCH) flush();
  }

  // -- impressions ---------------------------------------------------------------------------
  // Each item of a list (an element with data-item-id inside one with data-clickrec-list) is
  // shown once at least half of it has been in view for a second while the page was visible.
  const showing = new Map(); // element -> since when it is in view (0: page hidden)
  const shown = new WeakMap(); // list element -> {ids: [...], fresh: [...]}
  const watched = new WeakSet();
  const observer =
    window.IntersectionObserver &&
    new IntersectionObserver(
      (entries) => {
        for (const entry of entries) {
          const el = entry.target;
          if (entry.intersectionRatio >= 0.5) showing.set(el, visible() ? Date.now() : 0);
          else showing.delete(el);
        }
      },
      { threshold: 0.5 }
    );

  function visible() {
    return document.visibilityState === "visible";
  }

  function scan() {
    if (!observer) return;
    for (const el of document.querySelectorAll("[data-clickrec-list] [data-item-id]")) {
      if (!watched.has(el)) {
        watched.add(el);
        observer.observe(el);
      }
    }
  }

  function listOf(el) {
    const list = el.closest("[data-clickrec-list]");
    if (list && !shown.has(list)) shown.set(list, { ids: [], fresh: [] });
    return list;
  }

  function checkShown(now) {
    if (!visible()) return;
    for (const [el, since] of showing) {
      if (!since || now - since < SEEN_MS) continue;
      showing.delete(el);
      observer.unobserve(el);
      const list = listOf(el);
      const id = validId(el.dataset.itemId);
      const state = list && shown.get(list);
      if (id && state && !state.ids.includes(id)) {
        state.ids.push(id);
        state.fresh.push(id);
      }
    }
  }

  function collectImpressions() {
    // One impression event per list with what it newly showed; its item is the page's.
    for (const list of document.querySelectorAll("[data-clickrec-list]")) {
      const state = shown.get(list);
      if (!state || !state.fresh.length || !item) continue;
      const fresh = state.fresh.splice(0, 500);
      track("impression", item, Object.assign({ impression: fresh }, recommendation(list)));
    }
  }

  function recommendation(list) {
    const id = validId(list.dataset.recommendationId, 128);
    return id ? { recommendation_id: id } : {};
  }

  // -- clicks ----------------------------------------------------------------------------------
  function onClick(e) {
    if (e.type === "auxclick" && e.button !== 1) return; // the middle button opens a tab
    const target = e.target && e.target.closest && e.target.closest("[data-item-id]");
    const list = target && listOf(target);
    if (!list) return;
    const fields = recommendation(list);
    const ids = shown.get(list).ids;
    if (ids.length) fields.impression = ids.slice(0, 500); // what the reader chose among
    track("click", target.dataset.itemId, fields);
    flush(true); // the page is probably being left
  }

  // -- engaged time ----------------------------------------------------------------------------
  function reportEngagement() {
    if (item && engaged > 0) track("engagement", item, { event_value: engaged });
    engaged = 0;
  }

  function tick() {
    const now = Date.now();
    if (visible() && now - lastInput < ACTIVE_MS) engaged += 1;
    checkShown(now);
    ticks += 1;
    if (ticks % FLUSH_TICKS === 0) flush();
  }

  function leave() {
    reportEngagement();
    flush(true);
  }

  function onVisibility() {
    if (!visible()) return leave();
    lastInput = Date.now(); // coming back to the tab is activity
    for (const el of showing.keys()) showing.set(el, lastInput);
  }

  function pageview(itemId, fields) {
    reportEngagement(); // the time spent on the previous item, in a single-page app
    item = validId(itemId);
    lastInput = Date.now();
    track("view", itemId, fields);
  }

  function extra(options) {
    const fields = {};
    const rec = validId(options.recommendationId, 128);
    if (rec) fields.recommendation_id = rec;
    if (typeof options.value === "number") fields.event_value = options.value;
    if (options.context) fields.context = options.context;
    if (options.properties) fields.properties = options.properties;
    return fields;
  }

  // -- the public function -----------------------------------------------------------------------
  const commands = {
    pageview(options) {
      options = typeof options === "string" ? { itemId: options } : options || {};
      viewed = true;
      pageview(options.itemId, extra(options));
    },
    track(type, options) {
      options = options || {};
      if (!/^[\w.:-]{1,64}$/.test(type)) return warn("an event type is 1-64 of [A-Za-z0-9_.:-]");
      track(type, options.itemId || item, extra(options));
    },
    identify(userId) {
      const next = userId == null ? null : validId(userId);
      if (userId != null && !next) return warn("a user id has 1-256 characters");
      if (next === user) return;
      // Signing in keeps the session, so the engine joins its anonymous reads to the reader;
      // signing out or switching readers starts a new one.
      if (user !== null) newSession();
      user = next;
    },
    consent(granted) {
      if (granted) {
        consent = true;
        if (session) save(local, SESSION_KEY, session);
        const waiting = held;
        held = [];
        waiting.forEach(enqueue);
        flush();
      } else {
        remove(local, SESSION_KEY);
        remove(tab, QUEUE_KEY);
        consent = false;
        held = [];
        queue = [];
        session = null;
      }
    },
    flush() {
      flush(true);
    },
  };

  function clickrec(command, ...args) {
    if (commands[command]) commands[command](...args);
    else warn(`unknown command ${command}`);
  }
  clickrec.loaded = true;
  window.clickrec = clickrec;

  const saved = load(tab, QUEUE_KEY); // what earlier pages of this tab could not send
  if (Array.isArray(saved)) queue = saved.filter((q) => q && q.event && q.event.event_id);
  for (const args of (before && before.q) || []) clickrec(...args);

  let scanning = 0;
  function scanSoon() {
    // Lists rendered later (a widget) are found too, at most five times a second.
    if (scanning) return;
    scanning = setTimeout(() => {
      scanning = 0;
      scan();
    }, 200);
  }

  function start() {
    if (!item) item = validId(meta("clickrec:item")); // a tag parsed after the script ran
    if (auto && item && !viewed) pageview(item);
    scan();
    if (window.MutationObserver && observer) {
      const mutations = new MutationObserver(scanSoon);
      mutations.observe(document.documentElement, { childList: true, subtree: true });
    }
    const activity = () => {
      lastInput = Date.now();
    };
    for (const type of ["pointerdown", "pointermove", "keydown", "scroll", "wheel", "touchstart"]) {
      document.addEventListener(type, activity, { capture: true, passive: true });
    }
    document.addEventListener("click", onClick, true);
    document.addEventListener("auxclick", onClick, true);
    document.addEventListener("visibilitychange", onVisibility);
    window.addEventListener("pagehide", leave);
    window.addEventListener("pageshow", (e) => {
      if (e.persisted && auto && item) pageview(item); // back from the back/forward cache
    });
    window.addEventListener("online", () => flush());
    setInterval(tick, TICK_MS);
    flush();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
