// GraphiQL for onsale: queries and mutations over POST /graphql, subscriptions over
// graphql-transport-ws at /graphql/ws. The Headers tab is sent with every HTTP request and,
// for a subscription, as the connection_init payload, so one {"Authorization": "Bearer …"}
// signs both.
//
// GraphiQL gets the schema (for its docs, completion and checks) from the server's SDL rather
// than from the standard introspection query, which nests deeper than onsale's query depth
// limit allows.
import {
  buildSchema,
  createElement,
  createGraphiQLFetcher,
  createRoot,
  GraphiQL,
  setNonce,
} from '/graphiql/vendor/graphiql.js';

setNonce(document.querySelector('meta[name="csp-nonce"]').content);

const endpoint = (path, protocol) => {
  const url = new URL(path, window.location.href);
  if (protocol) url.protocol = protocol;
  return url.toString();
};

const fetcher = createGraphiQLFetcher({
  url: endpoint('/graphql'),
  subscriptionUrl: endpoint('/graphql/ws', window.location.protocol === 'https:' ? 'wss:' : 'ws:'),
});

const schema = await fetch('/graphiql/schema.graphql')
  .then((response) => (response.ok ? response.text() : Promise.reject(new Error(response.statusText))))
  .then(buildSchema)
  .catch((err) => {
    console.warn(`cannot load /graphiql/schema.graphql (${err.message}): GraphiQL introspects instead`);
    return undefined;
  });

const defaultQuery = `# Welcome to onsale. Reading needs no token. For holds and
# bookings, paste a token line that onsale prints at start,
# {"Authorization": "Bearer …"}, into Headers below.

query Events {
  events {
    id
    name
    venue
    startsAt
    seatCount
    available
    held
    booked
  }
}
`;

createRoot(document.getElementById('graphiql')).render(
  createElement(GraphiQL, { fetcher, schema, defaultQuery, defaultEditorToolsVisibility: 'headers' }),
);
