// What the browser tests share: their settings from scripts/browser-test.sh, and Debian's
// Chromium started the same way (playwright-core never downloads a browser).

import { test } from 'node:test';
import { chromium } from 'playwright-core';

export const ARTIFACTS_DIR = process.env.ARTIFACTS_DIR ?? 'test-artifacts';
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** The environment variable `name`, without a trailing slash; the test stops without it. */
export function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run scripts/browser-test.sh`);
  return value.replace(/\/$/, '');
}

/** Headless Chromium that reaches out to nothing by itself, with `args` added. */
export function launch(args = []) {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      ...args,
    ],
    timeout: 30_000,
  });
}

/**
 * Declares steps that build on each other, so they run in order and a failure skips the rest.
 * After each step's body, `check()` runs (it asserts what every step must keep, such as no
 * page errors); on a failure, `onFailure(slug)` saves what helps (screenshots) first.
 */
export function steps({ check, onFailure }) {
  let failed = false;
  return (name, body) =>
    test(name, async (t) => {
      if (failed) {
        t.skip('an earlier step failed');
        return;
      }
      try {
        await body(t);
        await check();
      } catch (err) {
        failed = true;
        await onFailure(name.replace(/\W+/g, '-').slice(0, 40)).catch(() => {});
        throw err;
      }
    });
}
