// Live updates: one EventSource('/api/v1/events') for the whole panel. Events are hints
// ({"type", "id", "host"?}); pages subscribe and refetch what they show. The browser
// reconnects by itself after a dropped connection; when the server refused the stream (401,
// 404, 503: the EventSource is then CLOSED) we open a new one after a pause. While the stream
// is down, subscribers get a synthetic "poll" hint every 3 s so the page stays current.

export interface LiveEvent {
  type: string;
  id?: string | number;
  host?: string;
  many?: boolean;  // too many of this type at once (or a resync): refetch whatever is shown
  [k: string]: unknown;
}
type Listener = (e: LiveEvent) => void;

const kTypes = ["host", "service", "collector", "error", "task", "audit"];
const listeners = new Set<Listener>();
const stateListeners = new Set<(up: boolean) => void>();
let source: EventSource | null = null;
let up = false;
let retry: number | undefined;
let poll: number | undefined;
let started = false;

function setUp(v: boolean): void {
  if (up === v) return;
  up = v;
  for (const s of stateListeners) s(v);
  if (!v && poll === undefined && started) {
    poll = window.setInterval(() => emit({ type: "poll" }), 3000);
  } else if (v && poll !== undefined) {
    clearInterval(poll);
    poll = undefined;
  }
}

function emit(e: LiveEvent): void {
  for (const l of [...listeners]) {
    try {
      l(e);
    } catch (err) {
      console.error(err);
    }
  }
}

function open(): void {
  if (source) source.close();
  const es = new EventSource("/api/v1/events", { withCredentials: true });
  source = es;
  es.onopen = () => {
    setUp(true);
    emit({ type: "reconnected" });  // what changed while away is refetched
  };
  es.onerror = (ev: Event) => {
    // A server-sent event named "error" (a hint that the errors table changed) is dispatched
    // as an "error" event too: it has data and the connection is fine.
    if (ev instanceof MessageEvent && typeof ev.data === "string") return;
    setUp(false);
    if (es.readyState === EventSource.CLOSED && started) {
      if (retry !== undefined) clearTimeout(retry);
      retry = window.setTimeout(open, 3000);
    }
  };
  const handler = (ev: MessageEvent) => {
    let data: LiveEvent;
    try {
      data = JSON.parse(ev.data) as LiveEvent;
    } catch {
      data = { type: ev.type };
    }
    if (!data.type) data.type = ev.type;
    if (es.readyState === EventSource.OPEN) setUp(true);
    emit(data);
  };
  for (const t of kTypes) es.addEventListener(t, handler as EventListener);
  es.addEventListener("hello", () => setUp(true));
  // The session behind the stream no longer grants access: pages refetch (their requests get
  // the 401 that leads to the login page); the stream is tried again later.
  es.addEventListener("denied", () => {
    es.close();
    setUp(false);
    emit({ type: "poll" });
    if (retry !== undefined) clearTimeout(retry);
    if (started) retry = window.setTimeout(open, 3000);
  });
  es.onmessage = handler;
}

export function startEvents(): void {
  if (started) return;
  started = true;
  open();
  if (!up && poll === undefined) poll = window.setInterval(() => emit({ type: "poll" }), 3000);
}

export function stopEvents(): void {
  started = false;
  if (source) source.close();
  source = null;
  if (retry !== undefined) clearTimeout(retry);
  if (poll !== undefined) clearInterval(poll);
  retry = poll = undefined;
  setUp(false);
}

// Subscribes until the returned function is called. `filter` picks the hints of interest
// (poll and reconnected hints always pass). The callback is throttled to one call per 300 ms.
export function subscribe(filter: (e: LiveEvent) => boolean, cb: () => void): () => void {
  let pending: number | undefined;
  const l: Listener = (e) => {
    if (e.type !== "poll" && e.type !== "reconnected" && !filter(e)) return;
    if (pending !== undefined) return;
    pending = window.setTimeout(() => {
      pending = undefined;
      cb();
    }, 300);
  };
  listeners.add(l);
  return () => {
    listeners.delete(l);
    if (pending !== undefined) clearTimeout(pending);
  };
}

export function onLiveState(cb: (up: boolean) => void): void {
  stateListeners.add(cb);
  cb(up);
}
