// The live seat map: loads a seat map over POST /graphql, keeps it current with the
// `seatChanges` subscription over graphql-transport-ws, and lets a signed-in buyer hold,
// confirm and release seats. Plain DOM, no framework; served by onsale at /demo.

import { createClient } from '/demo/vendor/graphql-ws.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const TOKEN_KEY = 'onsale.demo.token';
const MAX_RETRIES = 5;
const money = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });
const clock = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

// ----------------------------------------------------------------- GraphQL documents ---

const EVENTS = `query Events {
  events { id name venue startsAt seatCount available held booked }
}`;
const SEAT_MAP = `query SeatMap($eventId: ID!) {
  seatMap(eventId: $eventId) {
    seq
    event { id name venue startsAt seatCount available held booked }
    seats { id section row number priceCents status holdExpiresAt }
  }
}`;
const SEAT_CHANGES = `subscription SeatChanges($eventId: ID!, $afterSeq: Int) {
  seatChanges(eventId: $eventId, afterSeq: $afterSeq) { seatId status holdExpiresAt seq }
}`;
const HOLD_FIELDS = 'id eventId status expiresAt totalCents seats { id }';
const MY_HOLDS = `query MyHolds { myHolds(status: ACTIVE) { ${HOLD_FIELDS} } }`;
const HOLD_SEATS = `mutation HoldSeats($eventId: ID!, $seatIds: [ID!]!, $key: String) {
  holdSeats(eventId: $eventId, seatIds: $seatIds, idempotencyKey: $key) { ${HOLD_FIELDS} }
}`;
const HOLD_BEST = `mutation HoldBest($eventId: ID!, $count: Int!, $key: String) {
  holdBestAvailable(eventId: $eventId, count: $count, idempotencyKey: $key) { ${HOLD_FIELDS} }
}`;
const CONFIRM = `mutation Confirm($holdId: ID!, $key: String) {
  confirmHold(holdId: $holdId, idempotencyKey: $key) { id totalCents seats { id } tickets { seatId areaId code } }
}`;
const RELEASE = `mutation Release($holdId: ID!) { releaseHold(holdId: $holdId) { id status } }`;

// --------------------------------------------------------------------------- state ---

const state = {
  token: null,
  user: null,
  eventId: null,
  /** seat id → { id, section, row, number, priceCents, status, el, row index, x } */
  seats: new Map(),
  /** Seat ids row by row in drawing order, for arrow-key moves. */
  grid: [],
  /** The seq of the last change applied to `seats`. */
  lastSeq: 0,
  counts: { AVAILABLE: 0, HELD: 0, BOOKED: 0, BLOCKED: 0 },
  selected: new Set(),
  /** The buyer's current hold: { id, seatIds: Set, expiresAt (ms), totalCents }. */
  hold: null,
  countdownTimer: null,
  /** Bumped whenever the map is (re)loaded, so late answers for an old map are dropped. */
  generation: 0,
  subscription: null,
  resubscribeFailures: 0,
  busy: false,
};

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------------------ messages ---

function say(text, kind = 'info') {
  const el = $('message');
  el.textContent = text;
  el.dataset.kind = kind;
}

function setConnection(stateName, text) {
  const el = $('connection');
  el.dataset.state = stateName;
  el.textContent = text;
}

function seatLabel(id) {
  const seat = state.seats.get(String(id));
  return seat ? `${seat.section} ${seat.row}-${seat.number}` : `#${id}`;
}

function listOf(words) {
  if (words.length <= 1) return words.join('');
  return `${words.slice(0, -1).join(', ')} and ${words[words.length - 1]}`;
}

const SIGN_IN_PLEASE = 'Please sign in first: enter your name and press “Sign in”, or paste a token.';

/** The contract's error codes as sentences a buyer can act on. */
function explain(err) {
  switch (err.code) {
    case 'SEAT_UNAVAILABLE': {
      const ids = err.extensions.seatIds ?? [];
      if (ids.length === 0) return 'Not enough seats are available — try fewer seats.';
      const labels = ids.map(seatLabel);
      return ids.length === 1
        ? `Seat ${labels[0]} was just taken — pick another.`
        : `Seats ${listOf(labels)} were just taken — pick others.`;
    }
    case 'HOLD_EXPIRED':
      return 'Your hold ran out — hold the seats again.';
    case 'UNAUTHENTICATED':
      return SIGN_IN_PLEASE;
    case 'HOLD_NOT_ACTIVE':
      return 'That hold was already confirmed or released.';
    case 'FORBIDDEN':
      return 'That belongs to someone else.';
    case 'NOT_FOUND':
      return 'That no longer exists — reload the page.';
    case 'RETRY_LATER':
      return 'The server is still busy — try again in a moment.';
    case 'BAD_USER_INPUT':
    case 'NETWORK':
      return sentence(err.message);
    default:
      return 'Something went wrong on the server — try again.';
  }
}

function sentence(text) {
  const t = String(text ?? '').trim();
  if (!t) return 'The request was refused.';
  const capital = t[0].toUpperCase() + t.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

// ------------------------------------------------------------------- HTTP GraphQL ---

class GqlError extends Error {
  constructor(code, message, extensions = {}) {
    super(message);
    this.code = code;
    this.extensions = extensions;
  }
}

async function gql(query, variables = {}) {
  const headers = { 'Content-Type': 'application/json' };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers,
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new GqlError('NETWORK', 'The server cannot be reached — check the connection and try again');
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new GqlError('INTERNAL', `the server answered ${response.status}`);
  }
  const first = body.errors?.[0];
  if (first) {
    throw new GqlError(first.extensions?.code ?? 'INTERNAL', first.message, first.extensions ?? {});
  }
  return body.data;
}

/** Runs a request, retrying RETRY_LATER with backoff (at least what the server asked for). */
async function withRetry(query, variables) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await gql(query, variables);
    } catch (err) {
      if (err.code !== 'RETRY_LATER' || attempt >= MAX_RETRIES) throw err;
      say('Busy — retrying…', 'busy');
      const backoff = Math.max(Number(err.extensions.retryAfterMs) || 0, 100 * 2 ** attempt);
      await sleep(Math.min(backoff, 5000) * (1 + Math.random() * 0.5));
    }
  }
}

function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** A mutation with one idempotency key for all its tries, so a retry never acts twice. */
function mutate(query, variables) {
  return withRetry(query, { ...variables, key: newKey() });
}

// ---------------------------------------------------------------------- WebSocket ---

let wsClient = null;

function makeWsClient() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  // A client replaced by restartSocket still reports its socket's last moments (a dispose
  // waits for a connection in progress, then closes it) — possibly after the new client is
  // live. Only the current client's events may change what the page shows.
  let client = null;
  const ifCurrent =
    (handler) =>
    (...args) => {
      if (wsClient === client) handler(...args);
    };
  client = createClient({
    url: `${scheme}://${location.host}/graphql/ws`,
    connectionParams: () => (state.token ? { Authorization: `Bearer ${state.token}` } : {}),
    lazy: true,
    // Keep the socket over a quick unsubscribe/resubscribe instead of reconnecting.
    lazyCloseTimeout: 2000,
    keepAlive: 15000,
    retryAttempts: Infinity,
    shouldRetry: () => true,
    retryWait: (retries) => sleep(Math.min(5000, 250 * 2 ** retries) * (1 + Math.random() * 0.5)),
    on: {
      connecting: ifCurrent(() => setConnection('connecting', 'Connecting…')),
      connected: ifCurrent(() => {
        state.resubscribeFailures = 0;
        setConnection('live', 'Live');
      }),
      closed: ifCurrent(() => {
        if (state.subscription) setConnection('offline', 'Reconnecting…');
      }),
    },
  });
  return client;
}

function stopSubscription() {
  const sub = state.subscription;
  state.subscription = null;
  if (sub) {
    sub.done = true;
    sub.dispose();
  }
}

/** Subscribes to the current event's changes after the last one applied. */
function subscribe() {
  stopSubscription();
  const sub = { done: false, generation: state.generation, dispose: () => {} };
  const eventId = state.eventId;
  const payload = {
    query: SEAT_CHANGES,
    // A getter: graphql-ws re-sends this payload itself after a dropped connection, and
    // reading afterSeq then makes the server replay exactly what this page missed.
    get variables() {
      return { eventId, afterSeq: state.lastSeq };
    },
  };
  const current = () => !sub.done && sub.generation === state.generation;
  sub.dispose = wsClient.subscribe(payload, {
    next: (message) => {
      if (!current()) return;
      if (message.errors?.length) {
        subscriptionFailed(sub, message.errors[0]);
      } else if (message.data?.seatChanges) {
        applyChange(message.data.seatChanges);
      }
    },
    error: (err) => {
      if (current()) subscriptionFailed(sub, Array.isArray(err) ? err[0] : err);
    },
    complete: () => {
      // The server ended the stream without an error: pick up where we are.
      if (current()) resubscribeSoon(sub, 0);
    },
  });
  state.subscription = sub;
}

function subscriptionFailed(sub, err) {
  const code = err?.extensions?.code;
  if (code === 'BAD_USER_INPUT') {
    // The server no longer keeps the changes after our seq: start again from a fresh map.
    sub.done = true;
    setConnection('connecting', 'Reloading the map…');
    loadMap().catch(showError);
  } else if (code === 'NOT_FOUND') {
    stopSubscription();
    say('This event no longer exists — pick another.', 'error');
  } else {
    resubscribeSoon(sub, Number(err?.extensions?.retryAfterMs) || 0);
  }
}

async function resubscribeSoon(sub, minDelayMs) {
  sub.done = true;
  setConnection('offline', 'Reconnecting…');
  state.resubscribeFailures += 1;
  const backoff = Math.min(5000, 250 * 2 ** Math.min(state.resubscribeFailures, 5));
  await sleep(Math.max(minDelayMs, backoff));
  if (state.subscription === sub) subscribe();
}

/** Applies one change in seq order; a gap means one was missed, so ask again from ours. */
function applyChange(change) {
  if (change.seq <= state.lastSeq) return;
  if (change.seq > state.lastSeq + 1) {
    subscribe();
    return;
  }
  state.lastSeq = change.seq;
  $('map').dataset.seq = String(change.seq);
  const seat = state.seats.get(String(change.seatId));
  if (!seat) return;
  state.counts[seat.status] -= 1;
  state.counts[change.status] += 1;
  seat.status = change.status;
  drawSeat(seat);
  showCounts();
}

// ------------------------------------------------------------------------ sign-in ---

function tokenSubject(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const json = atob(parts[1].replace(/-/g, '+').replace(/_/g, '/'));
    const claims = JSON.parse(json);
    return typeof claims.sub === 'string' ? claims.sub : null;
  } catch {
    return null;
  }
}

async function useToken(token, { quiet = false } = {}) {
  const raw = token.trim().replace(/^bearer\s+/i, '');
  const sub = tokenSubject(raw);
  if (!sub) {
    say('That does not look like a token: it should be three parts separated by dots.', 'error');
    return false;
  }
  const previous = state.token;
  state.token = raw;
  try {
    await gql(MY_HOLDS);
  } catch (err) {
    state.token = previous;
    if (err.code === 'UNAUTHENTICATED') {
      say('That token was refused — it may have expired or come from another server.', 'error');
      return false;
    }
  }
  state.user = sub;
  sessionStorage.setItem(TOKEN_KEY, raw);
  showUser();
  // New credentials for the socket too: connection_init carries them.
  restartSocket();
  if (!quiet) say(`Signed in as ${sub}.`);
  await restoreHold();
  return true;
}

function signOut(message) {
  state.token = null;
  state.user = null;
  sessionStorage.removeItem(TOKEN_KEY);
  endHold();
  showUser();
  restartSocket();
  if (message) say(message, 'error');
}

function showUser() {
  $('signed-in').hidden = !state.user;
  $('signed-out').hidden = Boolean(state.user);
  $('who').textContent = state.user ?? '';
  updateButtons();
}

async function devSignIn(event) {
  event.preventDefault();
  const name = $('signin-name').value.trim();
  if (!name) {
    say('Enter a name to sign in with.', 'error');
    return;
  }
  let response;
  try {
    response = await fetch('/dev/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ sub: name }),
    });
  } catch {
    say('The server cannot be reached — check the connection and try again.', 'error');
    return;
  }
  if (response.status === 404) {
    say('Dev sign-in is off on this server — paste a token instead.', 'error');
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok || !body.token) {
    say(sentence(body.error ?? `sign-in failed (${response.status})`), 'error');
    return;
  }
  await useToken(body.token);
}

async function pasteToken(event) {
  event.preventDefault();
  if (await useToken($('token-input').value)) $('token-input').value = '';
}

function restartSocket() {
  if (!wsClient) return;
  const hadSubscription = Boolean(state.subscription);
  stopSubscription();
  wsClient.dispose();
  setConnection('connecting', 'Connecting…');
  wsClient = makeWsClient();
  if (hadSubscription) subscribe();
}

// ------------------------------------------------------------------------- events ---

async function loadEvents() {
  const data = await withRetry(EVENTS);
  const select = $('event-select');
  select.replaceChildren(
    ...data.events.map((event) => {
      const option = document.createElement('option');
      option.value = event.id;
      option.textContent = `${event.name} — ${event.venue}`;
      return option;
    }),
  );
  if (data.events.length === 0) {
    $('map').replaceChildren(paragraph('There are no events yet.'));
    return;
  }
  const wanted = new URLSearchParams(location.hash.slice(1)).get('event');
  const chosen = data.events.find((e) => e.id === wanted) ?? data.events[0];
  select.value = chosen.id;
  await selectEvent(chosen.id);
}

async function selectEvent(id) {
  state.eventId = id;
  history.replaceState(null, '', `#event=${encodeURIComponent(id)}`);
  endHold();
  state.selected.clear();
  await loadMap();
  await restoreHold();
}

/** Loads the whole map, then follows its changes from the map's seq. */
async function loadMap() {
  const generation = ++state.generation;
  stopSubscription();
  const data = await withRetry(SEAT_MAP, { eventId: state.eventId });
  if (generation !== state.generation) return;
  const { event, seats, seq } = data.seatMap;
  state.lastSeq = seq;
  state.counts = { AVAILABLE: 0, HELD: 0, BOOKED: 0, BLOCKED: 0 };
  for (const seat of seats) state.counts[seat.status] += 1;
  $('event-info').textContent =
    `${event.venue} · ${clock.format(new Date(event.startsAt))} · ${event.seatCount} seats`;
  drawMap(event, seats);
  $('map').dataset.seq = String(seq);
  showCounts();
  showSelection();
  subscribe();
}

async function restoreHold() {
  if (!state.token || !state.eventId || state.hold) return;
  try {
    const data = await gql(MY_HOLDS);
    const mine = data.myHolds
      .filter((h) => h.eventId === state.eventId && Date.parse(h.expiresAt) > Date.now())
      .sort((a, b) => Date.parse(b.expiresAt) - Date.parse(a.expiresAt));
    if (mine.length) startHold(mine[0]);
  } catch {
    // Not essential: the buyer can still hold seats again.
  }
}

// ---------------------------------------------------------------------------- map ---

const SEAT = 24;
const PITCH = 28;
const LABEL = 30;
const SECTION_HEAD = 34;
const SECTION_GAP = 14;
const STAGE = 44;

function svg(name, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function paragraph(text) {
  const p = document.createElement('p');
  p.className = 'muted';
  p.textContent = text;
  return p;
}

function drawMap(event, seats) {
  // Sections and rows in the order the event was created (seat ids ascending).
  const sections = new Map();
  for (const seat of [...seats].sort((a, b) => Number(a.id) - Number(b.id))) {
    if (!sections.has(seat.section)) sections.set(seat.section, new Map());
    const rows = sections.get(seat.section);
    if (!rows.has(seat.row)) rows.set(seat.row, []);
    rows.get(seat.row).push(seat);
  }
  let widest = 1;
  for (const rows of sections.values()) {
    for (const row of rows.values()) widest = Math.max(widest, row.length);
  }
  const width = LABEL * 2 + widest * PITCH;

  const root = svg('svg', {
    class: 'seatmap',
    role: 'group',
    'aria-label': `Seat map of ${event.name}`,
  });
  root.append(svg('rect', { class: 'stage', x: LABEL, y: 4, width: width - LABEL * 2, height: 26, rx: 6 }));
  root.append(svg('text', { class: 'stage-label', x: width / 2, y: 22, 'aria-hidden': 'true' }, 'STAGE'));

  state.seats = new Map();
  state.grid = [];
  let y = STAGE;
  for (const [sectionName, rows] of sections) {
    const group = svg('g', { role: 'group', 'aria-label': `${sectionName} section` });
    group.append(svg('text', { class: 'section-title', x: width / 2, y: y + 20 }, sectionName));
    y += SECTION_HEAD;
    for (const [rowLabel, rowSeats] of rows) {
      rowSeats.sort((a, b) => a.number - b.number);
      const rowGroup = svg('g', { role: 'group', 'aria-label': `${sectionName} row ${rowLabel}` });
      rowGroup.append(svg('text', { class: 'row-label', x: LABEL / 2, y: y + 16.5, 'aria-hidden': 'true' }, rowLabel));
      rowGroup.append(
        svg('text', { class: 'row-label', x: width - LABEL / 2, y: y + 16.5, 'aria-hidden': 'true' }, rowLabel),
      );
      const x0 = LABEL + ((widest - rowSeats.length) * PITCH) / 2 + (PITCH - SEAT) / 2;
      const gridRow = [];
      rowSeats.forEach((data, i) => {
        const x = x0 + i * PITCH;
        const el = svg('g', {
          class: 'seat',
          transform: `translate(${x} ${y})`,
          tabindex: 0,
          role: 'button',
          'data-seat-id': data.id,
        });
        el.append(svg('rect', { width: SEAT, height: SEAT, rx: 5 }));
        el.append(svg('text', { x: SEAT / 2, y: 16.5, 'aria-hidden': 'true' }));
        rowGroup.append(el);
        const seat = { ...data, id: String(data.id), el, gridRow: state.grid.length, x };
        state.seats.set(seat.id, seat);
        gridRow.push(seat.id);
        drawSeat(seat);
      });
      state.grid.push(gridRow);
      group.append(rowGroup);
      y += PITCH;
    }
    root.append(group);
    y += SECTION_GAP;
  }
  root.setAttribute('viewBox', `0 0 ${width} ${y}`);
  root.addEventListener('click', onSeatClick);
  root.addEventListener('keydown', onSeatKey);
  $('map').replaceChildren(root);
}

const STATUS_WORDS = { AVAILABLE: 'available', HELD: 'held', BOOKED: 'booked', BLOCKED: 'not for sale' };

function drawSeat(seat) {
  const mine = seat.status === 'HELD' && Boolean(state.hold?.seatIds.has(seat.id));
  const selected = state.selected.has(seat.id);
  const { el } = seat;
  el.dataset.status = seat.status;
  el.dataset.mine = String(mine);
  el.dataset.selected = String(selected);
  el.setAttribute('aria-pressed', String(selected));
  const status = mine ? 'held by you' : STATUS_WORDS[seat.status];
  el.setAttribute(
    'aria-label',
    `${seat.section} row ${seat.row} seat ${seat.number}, ${status}, ${money.format(seat.priceCents / 100)}`,
  );
  let glyph = String(seat.number);
  if (selected) glyph = '✓';
  else if (mine) glyph = '★';
  else if (seat.status === 'HELD') glyph = 'H';
  else if (seat.status === 'BOOKED') glyph = '✕';
  else if (seat.status === 'BLOCKED') glyph = '—';
  el.lastChild.textContent = glyph;
}

function showCounts() {
  $('count-available').textContent = state.counts.AVAILABLE;
  $('count-held').textContent = state.counts.HELD;
  $('count-booked').textContent = state.counts.BOOKED;
  $('count-blocked').textContent = state.counts.BLOCKED;
}

function onSeatClick(event) {
  const el = event.target.closest('.seat');
  if (el) toggleSeat(el.dataset.seatId);
}

function onSeatKey(event) {
  const el = event.target.closest('.seat');
  if (!el) return;
  const seat = state.seats.get(el.dataset.seatId);
  if (event.key === 'Enter' || event.key === ' ') {
    event.preventDefault();
    toggleSeat(seat.id);
    return;
  }
  const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
  const move = moves[event.key];
  if (!move) return;
  event.preventDefault();
  const row = state.grid[seat.gridRow + move[0]];
  if (!row) return;
  let target;
  if (move[0] === 0) {
    target = row[row.indexOf(seat.id) + move[1]];
  } else {
    // The seat in the next row nearest to this one horizontally.
    target = row.reduce((best, id) =>
      Math.abs(state.seats.get(id).x - seat.x) < Math.abs(state.seats.get(best).x - seat.x) ? id : best,
    );
  }
  if (target) state.seats.get(target).el.focus();
}

function toggleSeat(id) {
  const seat = state.seats.get(id);
  if (!seat) return;
  if (state.hold?.seatIds.has(id)) {
    say(`Seat ${seatLabel(id)} is already in your hold.`);
    return;
  }
  // Taken seats can be selected too: the map may be a moment behind, and the server decides.
  if (state.selected.has(id)) state.selected.delete(id);
  else state.selected.add(id);
  drawSeat(seat);
  showSelection();
}

function showSelection() {
  const ids = [...state.selected].filter((id) => state.seats.has(id));
  const el = $('selection');
  if (ids.length === 0) {
    el.textContent = 'No seats selected. Click or press Enter on a seat to select it.';
  } else {
    const total = ids.reduce((sum, id) => sum + state.seats.get(id).priceCents, 0);
    el.textContent = `Selected: ${listOf(ids.map(seatLabel))} — ${money.format(total / 100)}.`;
  }
  updateButtons();
}

// -------------------------------------------------------------------------- holds ---

function updateButtons() {
  const holding = Boolean(state.hold);
  $('hold-selected').disabled = state.busy || holding || state.selected.size === 0;
  $('best-2').disabled = state.busy || holding;
  $('best-4').disabled = state.busy || holding;
  $('confirm').disabled = state.busy || !holding;
  $('release').disabled = state.busy || !holding;
}

/** Runs one buyer action: one at a time, errors shown as sentences. */
async function act(action) {
  if (state.busy) return;
  if (!state.token) {
    say(SIGN_IN_PLEASE, 'error');
    $('signin-name').focus();
    return;
  }
  state.busy = true;
  updateButtons();
  try {
    await action();
  } catch (err) {
    showError(err);
  } finally {
    state.busy = false;
    updateButtons();
  }
}

function showError(err) {
  if (!(err instanceof GqlError)) {
    console.error(err);
    say('Something went wrong in this page — reload it.', 'error');
    return;
  }
  say(explain(err), 'error');
  if (err.code === 'SEAT_UNAVAILABLE') {
    for (const id of err.extensions.seatIds ?? []) {
      state.selected.delete(String(id));
      const seat = state.seats.get(String(id));
      if (seat) drawSeat(seat);
    }
    showSelection();
  } else if (err.code === 'UNAUTHENTICATED') {
    signOut(SIGN_IN_PLEASE);
  } else if (err.code === 'HOLD_EXPIRED' || err.code === 'HOLD_NOT_ACTIVE') {
    endHold();
  }
}

function holdSelected() {
  return act(async () => {
    const seatIds = [...state.selected];
    const data = await mutate(HOLD_SEATS, { eventId: state.eventId, seatIds });
    state.selected.clear();
    startHold(data.holdSeats);
    say(`Held ${listOf(seatIds.map(seatLabel))}. Confirm before the countdown ends.`);
  });
}

function holdBest(count) {
  return act(async () => {
    const data = await mutate(HOLD_BEST, { eventId: state.eventId, count });
    startHold(data.holdBestAvailable);
    const labels = data.holdBestAvailable.seats.map((s) => seatLabel(s.id));
    say(`Held the best ${count}: ${listOf(labels)}. Confirm before the countdown ends.`);
  });
}

function confirmHold() {
  return act(async () => {
    const hold = state.hold;
    const data = await mutate(CONFIRM, { holdId: hold.id });
    const booking = data.confirmHold;
    endHold();
    const labels = booking.seats.map((s) => seatLabel(s.id));
    say(`Booked ${listOf(labels)} for ${money.format(booking.totalCents / 100)} (booking ${booking.id}).`);
    showTickets(booking.tickets);
  });
}

// Each ticket as "seat: code", newest booking first (text only: codes are data, not markup).
function showTickets(tickets) {
  const list = $('ticket-list');
  for (const ticket of [...tickets].reverse()) {
    const item = document.createElement('li');
    const what = ticket.seatId ? seatLabel(ticket.seatId) : 'General admission';
    item.append(`${what}: `);
    const code = document.createElement('code');
    code.className = 'ticket-code';
    code.textContent = ticket.code;
    item.append(code);
    list.prepend(item);
  }
  $('tickets').hidden = list.children.length === 0;
}

function releaseHold() {
  return act(async () => {
    await mutate(RELEASE, { holdId: state.hold.id });
    endHold();
    say('Released your hold; those seats are available again.');
  });
}

function startHold(hold) {
  endHold();
  state.hold = {
    id: hold.id,
    seatIds: new Set(hold.seats.map((s) => String(s.id))),
    expiresAt: Date.parse(hold.expiresAt),
    totalCents: hold.totalCents,
  };
  const labels = [...state.hold.seatIds].map(seatLabel);
  $('hold-summary').textContent =
    `Your hold: ${listOf(labels)}, ${money.format(hold.totalCents / 100)}.`;
  $('hold-panel').hidden = false;
  for (const id of state.hold.seatIds) {
    state.selected.delete(id);
    const seat = state.seats.get(id);
    if (seat) drawSeat(seat);
  }
  showSelection();
  tick();
  state.countdownTimer = setInterval(tick, 250);
}

function endHold() {
  const hold = state.hold;
  state.hold = null;
  clearInterval(state.countdownTimer);
  state.countdownTimer = null;
  $('hold-panel').hidden = true;
  if (hold) {
    for (const id of hold.seatIds) {
      const seat = state.seats.get(id);
      if (seat) drawSeat(seat);
    }
  }
  updateButtons();
}

function tick() {
  if (!state.hold) return;
  const left = Math.ceil((state.hold.expiresAt - Date.now()) / 1000);
  if (left <= 0) {
    endHold();
    say('Your hold ran out — hold the seats again.', 'error');
    return;
  }
  const minutes = Math.floor(left / 60);
  const seconds = String(left % 60).padStart(2, '0');
  $('countdown').textContent = `Expires in ${minutes}:${seconds}.`;
  $('countdown').dataset.urgent = String(left <= 30);
}

// ---------------------------------------------------------------------------- start ---

async function start() {
  $('signin-form').addEventListener('submit', devSignIn);
  $('token-form').addEventListener('submit', pasteToken);
  $('signout-button').addEventListener('click', () => {
    signOut();
    say('Signed out.');
  });
  $('event-select').addEventListener('change', (e) => selectEvent(e.target.value).catch(showError));
  $('hold-selected').addEventListener('click', holdSelected);
  $('best-2').addEventListener('click', () => holdBest(2));
  $('best-4').addEventListener('click', () => holdBest(4));
  $('confirm').addEventListener('click', confirmHold);
  $('release').addEventListener('click', releaseHold);
  showUser();

  wsClient = makeWsClient();
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) await useToken(saved, { quiet: true });
  await loadEvents();
}

start().catch(showError);
