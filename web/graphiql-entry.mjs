// What the GraphiQL page (graphiql/app.js) takes from npm, bundled by build.sh into
// graphiql/vendor/graphiql.js and graphiql/vendor/graphiql.css: React's production build,
// GraphiQL and its styles, and the fetcher of @graphiql/toolkit, which runs subscriptions over
// graphql-transport-ws with the graphql-ws client (pulled in by the toolkit, bundled too).
// buildSchema reads the schema from onsale's SDL (see graphiql/app.js); setNonce gives GraphiQL's dialogs and menus (react-remove-scroll) the page's CSP nonce for
// the style elements they insert.
import 'graphiql/style.css';

export { createElement } from 'react';
export { createRoot } from 'react-dom/client';
export { GraphiQL } from 'graphiql';
export { createGraphiQLFetcher } from '@graphiql/toolkit';
export { buildSchema } from 'graphql';
export { setNonce } from 'get-nonce';
