// End-to-end test of the /demo seat map in Debian's Chromium, driven by playwright-core.
//
// Two users in two browser contexts watch the same event on two onsale instances that share
// one PostgreSQL database and one Redis. Run it with scripts/browser-test.sh, which starts
// the instances and sets:
//   ONSALE_A_URL, ONSALE_B_URL  base URLs of instance 1 (user A) and instance 2 (user B)
//   HOLD_TTL_SECS               the instances' hold lifetime (short, so a hold can expire)
//   ARTIFACTS_DIR               where screenshots go
//
// User B reaches instance 2 through a TCP proxy in this process, so a step can drop B's
// connections (as a flaky network would) and check that the page catches up on reconnect.
//
// The steps build on each other, so they run in order and a failure skips the rest.

import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { ARTIFACTS_DIR, launch, required, steps } from './chromium.mjs';

const A_URL = required('ONSALE_A_URL');
const B_URL = required('ONSALE_B_URL');
const HOLD_TTL_SECS = Number(process.env.HOLD_TTL_SECS ?? 3);
/** How soon a change made on one instance must show on the other page. */
const LIVE_MS = 1000;
/** How long the proxy holds back the server's side of B's first WebSocket. */
const SLOW_SOCKET_MS = 1500;

let browser;
let proxyB;
let pageA;
let pageB;
const pageErrors = [];
let networkDown = false;
/** The seats the steps use, filled in by the first step. */
const seats = {};
let totalSeats = 0;

before(async () => {
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  proxyB = await startProxy(B_URL);
  browser = await launch();
  pageA = await newPage('A');
  pageB = await newPage('B');
});

after(async () => {
  await browser?.close();
  proxyB?.close();
});

/**
 * A TCP proxy to `target` whose connections can be dropped and refused for a while, and
 * whose next WebSocket can be made slow (each of the server's bytes arrives late).
 */
async function startProxy(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  let up = true;
  let slowSocketMs = 0;
  const track = (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  };
  const server = net.createServer((client) => {
    track(client);
    if (!up) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(port), hostname);
    track(upstream);
    client.pipe(upstream);
    let delay = 0;
    client.once('data', (head) => {
      if (slowSocketMs && / \/graphql\/ws /.test(String(head))) {
        delay = slowSocketMs;
        slowSocketMs = 0;
      }
    });
    const later = (action) => (delay ? setTimeout(action, delay) : action());
    upstream.on('data', (chunk) => later(() => client.write(chunk)));
    upstream.on('end', () => later(() => client.end()));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => later(() => client.destroy()));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    drop() {
      up = false;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      up = true;
    },
    /** Delays everything the server sends on the next WebSocket by `ms`. */
    slowNextSocket(ms) {
      slowSocketMs = ms;
    },
    close() {
      this.drop();
      server.close();
    },
  };
}

async function newPage(who) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 1300 } });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  // Script errors fail the step they happen in; so do console errors, but for the failed
  // connection attempts while a step has cut B off on purpose.
  page.on('pageerror', (err) => pageErrors.push(`page ${who}: uncaught error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    if (networkDown && /WebSocket connection to .* failed|ERR_CONNECTION/.test(msg.text())) return;
    pageErrors.push(`page ${who}: console error: ${msg.text()}`);
  });
  return page;
}

const step = steps({
  check: () => assert.deepEqual(pageErrors.splice(0), [], 'the pages reported errors'),
  onFailure: (slug) => screenshots(`failed-${slug}`),
});

async function screenshots(name) {
  const files = [];
  for (const [who, page] of [['a', pageA], ['b', pageB]]) {
    const file = path.join(ARTIFACTS_DIR, `seatmap-${name}-${who}.png`);
    await page.screenshot({ path: file, fullPage: true });
    files.push(file);
  }
  return files;
}

const seatSelector = (id, status) =>
  status ? `[data-seat-id="${id}"][data-status="${status}"]` : `[data-seat-id="${id}"]`;

/** Milliseconds until `page` shows seat `id` with `status`, started before the action. */
function watchSeat(page, id, status, timeout) {
  const started = Date.now();
  return page
    .waitForSelector(seatSelector(id, status), { state: 'attached', timeout })
    .then(() => Date.now() - started);
}

async function seatInfo(page, id) {
  const el = page.locator(seatSelector(id));
  return {
    status: await el.getAttribute('data-status'),
    label: await el.getAttribute('aria-label'),
  };
}

async function counts(page) {
  const read = async (name) => Number(await page.textContent(`#count-${name}`));
  return { available: await read('available'), held: await read('held'), booked: await read('booked') };
}

async function signIn(page, baseUrl, name, eventId) {
  await page.goto(`${baseUrl}/demo${eventId ? `#event=${eventId}` : ''}`);
  await page.waitForSelector('.seat');
  await page.fill('#signin-name', name);
  await page.click('#signin-button');
  await page.waitForSelector('#signed-in:not([hidden])');
  assert.equal(await page.textContent('#who'), name);
  // Live: the seatChanges subscription is up.
  await page.waitForSelector('#connection[data-state="live"]');
}

async function seatIdByLabel(page, prefix) {
  const id = await page.getAttribute(`.seat[aria-label^="${prefix},"]`, 'data-seat-id');
  assert.ok(id, `no seat labelled ${prefix}`);
  return id;
}

step('A and B sign in on two instances and watch the same event', async () => {
  await signIn(pageA, A_URL, 'alice');
  const eventId = await pageA.inputValue('#event-select');
  // B signs in while the page's first socket is still connecting: the socket signing in
  // replaces goes live and closes after its successor is live, and the page stays live.
  const firstSocket = pageB.waitForEvent('websocket');
  proxyB.slowNextSocket(SLOW_SOCKET_MS);
  await signIn(pageB, proxyB.url, 'bob', eventId);
  await firstSocket;
  // The slow socket's handshake, acknowledgement and close each arrive SLOW_SOCKET_MS late.
  await pageB.waitForTimeout(4 * SLOW_SOCKET_MS);
  assert.equal(await pageB.getAttribute('#connection', 'data-state'), 'live');
  assert.equal(await pageB.inputValue('#event-select'), eventId);

  seats.first = await seatIdByLabel(pageA, 'Orchestra row A seat 10');
  seats.second = await seatIdByLabel(pageA, 'Orchestra row A seat 11');
  seats.third = await seatIdByLabel(pageA, 'Orchestra row A seat 12');
  const first = await seatInfo(pageB, seats.first);
  assert.equal(first.status, 'AVAILABLE');
  assert.equal(first.label, 'Orchestra row A seat 10, available, $120.00');

  const a = await counts(pageA);
  assert.deepEqual(await counts(pageB), a);
  assert.equal(a.held, 0);
  assert.equal(a.booked, 0);
  totalSeats = a.available;
  assert.ok(totalSeats > 0);
});

step('A holds a seat by clicking: B sees it HELD within 1 s', async () => {
  await pageA.click(seatSelector(seats.first));
  assert.equal(await pageA.getAttribute(seatSelector(seats.first), 'aria-pressed'), 'true');
  const seenOnB = watchSeat(pageB, seats.first, 'HELD', 5000);
  await pageA.click('#hold-selected');
  const ms = await seenOnB;
  assert.ok(ms <= LIVE_MS, `B saw the hold after ${ms} ms`);

  assert.equal(
    (await seatInfo(pageB, seats.first)).label,
    'Orchestra row A seat 10, held, $120.00',
  );
  await pageA.waitForSelector('#hold-panel:not([hidden])');
  assert.equal(
    await pageA.textContent('#message'),
    'Held Orchestra A-10. Confirm before the countdown ends.',
  );
  assert.equal(
    (await seatInfo(pageA, seats.first)).label,
    'Orchestra row A seat 10, held by you, $120.00',
  );
  assert.match(await pageA.textContent('#countdown'), /^Expires in 0:0[0-3]\.$/);
  assert.deepEqual(await counts(pageB), { available: totalSeats - 1, held: 1, booked: 0 });
});

step('A confirms: B sees it BOOKED within 1 s', async () => {
  const seenOnB = watchSeat(pageB, seats.first, 'BOOKED', 5000);
  await pageA.click('#confirm');
  const ms = await seenOnB;
  assert.ok(ms <= LIVE_MS, `B saw the booking after ${ms} ms`);

  await pageA.waitForSelector('#hold-panel', { state: 'hidden' });
  assert.match(
    await pageA.textContent('#message'),
    /^Booked Orchestra A-10 for \$120\.00 \(booking [0-9a-f-]+\)\.$/,
  );
  // The booking's ticket, with its door code.
  assert.equal(await pageA.isVisible('#tickets'), true);
  const tickets = await pageA.$$eval('#ticket-list li', (items) => items.map((li) => li.textContent));
  assert.equal(tickets.length, 1);
  assert.match(tickets[0], /^Orchestra A-10: [A-Z0-9]{26}$/);
  assert.equal(await pageB.isVisible('#tickets'), false, 'only the buyer sees codes');
  assert.equal((await seatInfo(pageA, seats.first)).status, 'BOOKED');
  assert.equal(
    (await seatInfo(pageB, seats.first)).label,
    'Orchestra row A seat 10, booked, $120.00',
  );
  assert.deepEqual(await counts(pageB), { available: totalSeats - 1, held: 0, booked: 1 });
});

step('B clicks the booked seat and holds it: the page says it was just taken', async () => {
  await pageB.click(seatSelector(seats.first));
  await pageB.click('#hold-selected');
  await pageB.waitForFunction(
    () => document.getElementById('message').dataset.kind === 'error',
    null,
    { timeout: 5000 },
  );
  assert.equal(
    await pageB.textContent('#message'),
    'Seat Orchestra A-10 was just taken — pick another.',
  );
  assert.equal(await pageB.isHidden('#hold-panel'), true);
  const seat = await seatInfo(pageB, seats.first);
  assert.equal(seat.status, 'BOOKED');
  // The refused seat is no longer selected.
  assert.equal(await pageB.getAttribute(seatSelector(seats.first), 'aria-pressed'), 'false');
  assert.deepEqual(await counts(pageB), { available: totalSeats - 1, held: 0, booked: 1 });
});

step('a hold left to expire turns AVAILABLE on both pages', async () => {
  // This time by keyboard: focus the seat, Space selects it.
  await pageA.focus(seatSelector(seats.second));
  await pageA.keyboard.press('Space');
  assert.equal(await pageA.getAttribute(seatSelector(seats.second), 'aria-pressed'), 'true');
  const heldOnB = watchSeat(pageB, seats.second, 'HELD', 5000);
  await pageA.click('#hold-selected');
  assert.ok((await heldOnB) <= LIVE_MS);
  await pageA.waitForSelector('#hold-panel:not([hidden])');
  const [shotA, shotB] = await screenshots('held');
  console.log(`screenshots: ${shotA} ${shotB}`);

  // The hold lasts HOLD_TTL_SECS; the sweeper then returns the seat and publishes the change.
  const limit = (HOLD_TTL_SECS + 5) * 1000;
  await Promise.all([
    watchSeat(pageA, seats.second, 'AVAILABLE', limit),
    watchSeat(pageB, seats.second, 'AVAILABLE', limit),
  ]);
  for (const page of [pageA, pageB]) {
    assert.equal(
      (await seatInfo(page, seats.second)).label,
      'Orchestra row A seat 11, available, $120.00',
    );
    assert.deepEqual(await counts(page), { available: totalSeats - 1, held: 0, booked: 1 });
  }
  assert.equal(await pageA.textContent('#message'), 'Your hold ran out — hold the seats again.');
  assert.equal(await pageA.isHidden('#hold-panel'), true);
  await screenshots('expired');
});

step("B's connection drops; on reconnect it replays what it missed from afterSeq", async () => {
  const seqBefore = Number(await pageB.getAttribute('#map', 'data-seq'));
  const subscribes = [];
  pageB.on('websocket', (ws) =>
    ws.on('framesent', (frame) => {
      const message = JSON.parse(String(frame.payload));
      if (message.type === 'subscribe') subscribes.push(message.payload.variables);
    }),
  );

  networkDown = true;
  proxyB.drop();
  await pageB.waitForSelector('#connection[data-state="offline"]', { timeout: 5000 });

  // While B is cut off, A holds and books a seat: two changes B does not see.
  await pageA.click(seatSelector(seats.third));
  await pageA.click('#hold-selected');
  await pageA.waitForSelector('#hold-panel:not([hidden])');
  await pageA.click('#confirm');
  await pageA.waitForSelector(seatSelector(seats.third, 'BOOKED'), { state: 'attached' });
  assert.equal((await seatInfo(pageB, seats.third)).status, 'AVAILABLE');

  proxyB.restore();
  await pageB.waitForSelector('#connection[data-state="live"]', { timeout: 15_000 });
  networkDown = false;
  await pageB.waitForSelector(seatSelector(seats.third, 'BOOKED'), { state: 'attached', timeout: 5000 });
  assert.deepEqual(subscribes, [{ eventId: await pageB.inputValue('#event-select'), afterSeq: seqBefore }]);
  assert.equal(Number(await pageB.getAttribute('#map', 'data-seq')), seqBefore + 2);
  assert.deepEqual(await counts(pageB), { available: totalSeats - 2, held: 0, booked: 2 });
  assert.deepEqual(await counts(pageA), await counts(pageB));
});
