#!/usr/bin/env bash
# Rebuilds the committed browser bundles from the versions pinned in web/package-lock.json
# (installed into web/node_modules, which git ignores):
#   demo/vendor/graphql-ws.js                 the graphql-ws client of the /demo page
#   graphiql/vendor/graphiql.js, graphiql.css  React, GraphiQL and its fetcher, for GET /
#   graphiql/vendor/LICENSES.txt               the licenses of every package in that bundle
# The outputs are committed and embedded in the binary, so running onsale needs no build step
# and no network; run this only to change or upgrade a bundle, then commit the new files. The
# same lock file gives the same bytes (check: run it twice, `git status` shows nothing new).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
npm ci --no-audit --no-fund
version() { node -p "require('./node_modules/$1/package.json').version"; }
esbuild() { npx --no-install esbuild "$@"; }

esbuild demo-entry.mjs --bundle --format=esm --minify --target=es2020 \
    --legal-comments=none \
    --banner:js="/*! graphql-ws $(version graphql-ws) client, bundled by web/build.sh; do not edit. MIT License, Copyright (c) 2020 Denis Badurina */" \
    --outfile=demo/vendor/graphql-ws.js

# NODE_ENV=production selects React's production build. The CSS imported by the entry lands
# beside the script as graphiql.css; GraphiQL's fonts and icons are data: URLs inside it.
banner="/*! GraphiQL $(version graphiql), React $(version react), bundled by web/build.sh; do not edit. Licenses: LICENSES.txt */"
esbuild graphiql-entry.mjs --bundle --format=esm --minify --target=es2020 \
    --define:process.env.NODE_ENV='"production"' --legal-comments=none \
    --banner:js="$banner" --banner:css="$banner" \
    --metafile=node_modules/.graphiql-meta.json --log-level=warning \
    --outfile=graphiql/vendor/graphiql.js
node licenses.mjs node_modules/.graphiql-meta.json >graphiql/vendor/LICENSES.txt
