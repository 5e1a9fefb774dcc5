// GraphiQL at / in Debian's Chromium with the network off: every request that is not to the
// onsale instance fails. Run it with scripts/browser-test.sh, which starts onsale and sets:
//   ONSALE_A_URL        base URL of an onsale instance (DEV_SIGNIN on, the demo event seeded)
//   ONSALE_ADMIN_TOKEN  an admin token of that instance
//   ARTIFACTS_DIR       where screenshots go
//
// The network is off twice over: Playwright aborts every request of the page that is not to
// onsale (and records it), and Chromium resolves no host name and sends whatever else it
// fetches to a proxy that drops every connection. Loopback addresses bypass the proxy, so only
// onsale, reached at 127.0.0.1, answers. A GraphiQL that loads anything from a CDN renders
// nothing here, and the requests it tried are listed.
//
// The steps build on each other, so a failure skips the rest.

import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { ARTIFACTS_DIR, launch, required, steps } from './chromium.mjs';

const A_URL = required('ONSALE_A_URL');
const ADMIN_TOKEN = required('ONSALE_ADMIN_TOKEN');
const ORIGIN = new URL(A_URL).origin;
/** What the old GraphiQL page loaded from a public CDN. */
const CDN_SCRIPT = 'https://unpkg.com/graphiql@4/graphiql.min.js';

let browser;
let deadProxy;
let context;
let page;
/** Requests of the page that were not to onsale (aborted), and every request it made. */
const blocked = [];
const requested = [];
const pageErrors = [];
let userToken;

before(async () => {
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  deadProxy = net.createServer((socket) => socket.destroy());
  await new Promise((resolve) => deadProxy.listen(0, '127.0.0.1', resolve));
  browser = await launch([
    `--proxy-server=http://127.0.0.1:${deadProxy.address().port}`,
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
  ]);
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(10_000);
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (new URL(url).origin === ORIGIN) return route.continue();
    blocked.push(url);
    return route.abort('internetdisconnected');
  });
  page = await context.newPage();
  page.on('request', (request) => requested.push(request.url()));
  // Script errors and console errors (a CSP violation is one) fail the step they happen in.
  page.on('pageerror', (err) => pageErrors.push(`uncaught error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') pageErrors.push(`console error: ${msg.text()}`);
  });
});

after(async () => {
  await browser?.close();
  deadProxy?.close();
});

const step = steps({
  check: () => {
    assert.deepEqual(pageErrors.splice(0), [], 'the page reported errors');
    assert.deepEqual(blocked.splice(0), [], 'the page asked for something not on onsale');
  },
  onFailure: (slug) =>
    page.screenshot({ path: path.join(ARTIFACTS_DIR, `graphiql-failed-${slug}.png`), fullPage: true }),
});

/** POST /graphql from the test itself (not the browser); returns the JSON body. */
async function gql(query, variables, token) {
  const response = await fetch(`${A_URL}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  assert.equal(response.status, 200);
  return response.json();
}

/** The text of one of GraphiQL's editors (CodeMirror 5 keeps its instance on the element). */
const editorValue = (selector) =>
  page.$eval(`${selector} .CodeMirror`, (el) => el.CodeMirror.getValue());
const setEditor = (selector, text) =>
  page.$eval(`${selector} .CodeMirror`, (el, value) => el.CodeMirror.setValue(value), text);
const QUERY_EDITOR = '.graphiql-query-editor';
const HEADERS_EDITOR = '.graphiql-editor-tool .graphiql-editor:not(.hidden)';
const RESPONSE = '.graphiql-response';

/**
 * Puts `query` into the query editor, as typing would, and waits until GraphiQL has read it:
 * the active tab is named after the query's operation, which every query here names.
 */
async function typeQuery(query) {
  const name = query.match(/^(?:query|mutation|subscription) (\w+)/)[1];
  await setEditor(QUERY_EDITOR, query);
  await page.waitForSelector(`.graphiql-tab-active:has-text("${name}")`);
}

/** Runs `query` with the run button and returns the response once `done(response)` holds. */
async function run(query, done = () => true) {
  await typeQuery(query);
  const before = await editorValue(RESPONSE);
  await page.click('.graphiql-execute-button');
  return waitForResponse((response, text) => text !== before && done(response));
}

async function waitForResponse(done) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const text = await editorValue(RESPONSE);
    let response;
    try {
      response = JSON.parse(text);
    } catch {
      response = undefined;
    }
    if (response !== undefined && done(response, text)) return response;
    assert.ok(Date.now() < deadline, `no such response in 10 s; the response pane shows: ${text}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

step('the network is off: anything but onsale fails to load', async () => {
  await page.goto('about:blank');
  const outcome = await page.evaluate(
    (url) => fetch(url, { mode: 'no-cors' }).then(() => 'loaded', () => 'failed'),
    CDN_SCRIPT,
  );
  assert.equal(outcome, 'failed');
  assert.deepEqual(blocked.splice(0), [CDN_SCRIPT]);

  // Behind Playwright's routing, Chromium itself reaches no host either.
  const bare = await browser.newContext();
  try {
    const other = await bare.newPage();
    await other.goto('about:blank');
    assert.equal(
      await other.evaluate(
        (url) => fetch(url, { mode: 'no-cors' }).then(() => 'loaded', () => 'failed'),
        CDN_SCRIPT,
      ),
      'failed',
    );
  } finally {
    await bare.close();
  }
  pageErrors.splice(0); // the refused fetch is logged as a console error
  requested.splice(0);
});

step('GraphiQL renders, loading everything from onsale', async () => {
  await page.goto(`${A_URL}/`);
  await page.waitForSelector(`${QUERY_EDITOR} .CodeMirror`).catch((err) => {
    throw new Error(`GraphiQL did not render; it asked elsewhere for: ${blocked.join(' ') || 'nothing'}`, {
      cause: err,
    });
  });
  await page.waitForSelector('.graphiql-execute-button');
  assert.equal(await page.title(), 'onsale GraphiQL');
  // The schema came from onsale: the docs list the contract's root types.
  await page.click('.graphiql-sidebar button[aria-label="Show Documentation Explorer"]');
  await page.waitForSelector('.graphiql-doc-explorer-root-type');
  assert.deepEqual(
    await page.$$eval('.graphiql-doc-explorer-root-type + a', (links) => links.map((a) => a.textContent)),
    ['Query', 'Mutation', 'Subscription'],
  );
  await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'graphiql.png') });
  const elsewhere = requested.filter((url) => new URL(url).origin !== ORIGIN);
  assert.deepEqual(elsewhere, [], 'every request went to onsale');
  assert.ok(requested.includes(`${ORIGIN}/graphiql/vendor/graphiql.js`), requested.join(' '));
});

step('GraphiQL runs a query', async () => {
  const response = await run('query DemoEvents { events { name seatCount } }', (r) => 'data' in r);
  assert.deepEqual(response.errors, undefined);
  assert.ok(
    response.data.events.some((e) => e.name === 'onsale Demo Night' && e.seatCount === 400),
    JSON.stringify(response),
  );
});

step('the Headers tab signs requests with a pasted bearer token', async () => {
  const signIn = await fetch(`${A_URL}/dev/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ sub: 'grace' }),
  });
  assert.equal(signIn.status, 200);
  userToken = (await signIn.json()).token;

  const anonymous = await run('query Anonymous { myHolds { id } }', (r) => 'errors' in r);
  assert.equal(anonymous.errors[0].extensions.code, 'UNAUTHENTICATED');

  await page.click('.graphiql-editor-tools button:has-text("Headers")');
  await setEditor(HEADERS_EDITOR, `{"Authorization": "Bearer ${userToken}"}`);
  const signed = await run('query Signed { myHolds { id } }', (r) => 'data' in r && r.data !== null);
  assert.deepEqual(signed, { data: { myHolds: [] } });
});

step('GraphiQL follows a subscription over graphql-transport-ws', async () => {
  const created = await gql(
    `mutation($input: CreateEventInput!) { createEvent(input: $input) { id } }`,
    {
      input: {
        name: 'GraphiQL night',
        venue: 'Browser hall',
        startsAt: '2099-01-01T20:00:00Z', // after the demo event, which the seat-map test picks
        sections: [{ name: 'Floor', rows: [{ label: 'A', seats: 2, priceCents: 0 }] }],
      },
    },
    ADMIN_TOKEN,
  );
  const eventId = created.data.createEvent.id;
  const map = await gql(`query($e: ID!) { seatMap(eventId: $e) { seats { id } } }`, { e: eventId });
  const seatId = map.data.seatMap.seats[0].id;

  const sent = [];
  const received = [];
  let socketUrl;
  page.on('websocket', (ws) => {
    socketUrl = ws.url();
    ws.on('framesent', (frame) => sent.push(JSON.parse(String(frame.payload))));
    ws.on('framereceived', (frame) => received.push(JSON.parse(String(frame.payload))));
  });

  await typeQuery(`subscription WatchSeats { seatChanges(eventId: "${eventId}") { seatId status seq } }`);
  await page.click('.graphiql-execute-button');
  await waitFor(() => received.some((m) => m.type === 'connection_ack'), 'the server acknowledged');
  await waitFor(() => sent.some((m) => m.type === 'subscribe'), 'GraphiQL subscribed');

  assert.equal(socketUrl, `${ORIGIN.replace(/^http/, 'ws')}/graphql/ws`);
  assert.deepEqual(
    sent.find((m) => m.type === 'connection_init').payload,
    { Authorization: `Bearer ${userToken}` },
    'the Headers tab is the connection_init payload',
  );

  const hold = await gql(
    `mutation($e: ID!, $s: [ID!]!) { holdSeats(eventId: $e, seatIds: $s) { id } }`,
    { e: eventId, s: [seatId] },
    userToken,
  );
  assert.ok(hold.data?.holdSeats?.id, JSON.stringify(hold));
  const change = await waitForResponse((r) => r.data?.seatChanges?.status === 'HELD');
  assert.equal(change.data.seatChanges.seatId, seatId);
  await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'graphiql-subscription.png') });

  // The run button now stops the subscription.
  await page.click('.graphiql-execute-button');
  await waitFor(() => sent.some((m) => m.type === 'complete'), 'GraphiQL ended the subscription');
});

async function waitFor(condition, what) {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    assert.ok(Date.now() < deadline, `timed out waiting: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
