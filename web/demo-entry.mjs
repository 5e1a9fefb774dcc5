// What the /demo page takes from graphql-ws: the browser client only (no server code).
export { createClient, CloseCode } from 'graphql-ws/client';
