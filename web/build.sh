#!/usr/bin/env bash
# Rebuilds web/demo/vendor/graphql-ws.js, the bundled graphql-ws client of the /demo page,
# from the versions pinned in web/package-lock.json (installed into web/node_modules, which
# git ignores). The output is committed, so running onsale needs no build step; run this
# only to change or upgrade the bundle, then commit the new file.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
npm ci --no-audit --no-fund
version=$(node -p 'require("./node_modules/graphql-ws/package.json").version')
npx --no-install esbuild vendor-entry.mjs --bundle --format=esm --minify --target=es2020 \
    --legal-comments=none \
    --banner:js="/*! graphql-ws $version client, bundled by web/build.sh; do not edit. MIT License, Copyright (c) 2020 Denis Badurina */" \
    --outfile=demo/vendor/graphql-ws.js
