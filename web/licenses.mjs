// Prints the name, version and license text of every npm package that an esbuild bundle
// contains, from the bundle's metafile (usage: node licenses.mjs META.json). Sorted by name,
// so the same lock file gives the same file.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

const meta = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const dirs = new Set();
for (const input of Object.keys(meta.inputs)) {
  const match = input.match(/^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//);
  if (match) dirs.add(match[1]);
}

const packages = [...dirs]
  .map((dir) => ({ dir, pkg: JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) }))
  .sort((a, b) => a.pkg.name.localeCompare(b.pkg.name) || a.pkg.version.localeCompare(b.pkg.version));

const out = ['Packages bundled into graphiql.js and graphiql.css by web/build.sh, with their licenses.', ''];
for (const { dir, pkg } of packages) {
  const file = readdirSync(dir).find((name) => /^(licen[cs]e|copying)(\.|$)/i.test(name));
  out.push('='.repeat(78), `${pkg.name} ${pkg.version} (${pkg.license ?? 'see below'})`, '');
  out.push(file ? readFileSync(path.join(dir, file), 'utf8').trim() : `No license file in the package; package.json says: ${pkg.license}`);
  out.push('');
}
process.stdout.write(out.join('\n'));
