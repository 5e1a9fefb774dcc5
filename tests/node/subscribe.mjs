// Subscribes to seatChanges with the graphql-ws library (graphql-transport-ws) and prints
// one JSON line per change; exits 0 after COUNT changes, 1 on error or timeout.
// Usage: node subscribe.mjs WS_URL EVENT_ID COUNT TIMEOUT_MS
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, eventId, count, timeoutMs] = process.argv.slice(2);
const want = Number(count);
const client = createClient({ url, webSocketImpl: WebSocket, lazy: false, retryAttempts: 0 });
const timer = setTimeout(() => {
  console.error(`timeout after ${timeoutMs} ms`);
  process.exit(1);
}, Number(timeoutMs));

let seen = 0;
client.on('connected', () => console.log(JSON.stringify({ connected: true })));
client.subscribe(
  {
    query: 'subscription($e: ID!) { seatChanges(eventId: $e) { eventId seatId status seq } }',
    variables: { e: eventId },
  },
  {
    next: (msg) => {
      console.log(JSON.stringify(msg));
      seen += 1;
      if (seen >= want) {
        clearTimeout(timer);
        client.dispose();
        process.exit(0);
      }
    },
    error: (err) => {
      console.error('subscription error', JSON.stringify(err));
      process.exit(1);
    },
    complete: () => {},
  },
);
