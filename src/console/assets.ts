import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/**
 * A folder of the console's source (`views`, `assets`): beside this file (source runs and builds
 * that copy them), else in `src/console/` of the package (builds that do not).
 */
export function consoleDir(name: string): string {
  const candidates = [path.join(here, name), path.resolve(here, '../../../src/console', name)];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`console ${name} not found (looked in ${candidates.join(', ')})`);
  return found;
}

export interface Asset {
  body: Buffer;
  type: string;
}

export interface AssetTable {
  /** Public URL of each asset by its logical name (`console.css` -> `/console/assets/console.<hash>.css`). */
  urls: Record<'css' | 'js' | 'webauthn', string>;
  /** Assets by hashed file name. */
  files: Map<string, Asset>;
}

const TYPES: Record<string, string> = { '.css': 'text/css; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };

/**
 * The console's static files, each under a name carrying a hash of its content, so they can be
 * cached for a year (`immutable`) and a new release is fetched at once. The passkey helper is
 * @simplewebauthn/browser's own bundle, served from this server (no CDN).
 */
export function loadAssets(prefix: string): AssetTable {
  const dir = consoleDir('assets');
  const require = createRequire(import.meta.url);
  const entry = require.resolve('@simplewebauthn/browser');
  const pkg = entry.slice(0, entry.lastIndexOf(path.join('@simplewebauthn', 'browser')) + path.join('@simplewebauthn', 'browser').length);
  const webauthn = path.join(pkg, 'dist', 'bundle', 'index.umd.min.js');
  const sources: Array<[keyof AssetTable['urls'], string, string]> = [
    ['css', 'console', path.join(dir, 'console.css')],
    ['js', 'console', path.join(dir, 'console.js')],
    ['webauthn', 'webauthn', webauthn],
  ];
  const files = new Map<string, Asset>();
  const urls = {} as AssetTable['urls'];
  for (const [key, base, file] of sources) {
    const body = readFileSync(file);
    const ext = path.extname(file);
    const name = `${base}.${createHash('sha256').update(body).digest('hex').slice(0, 16)}${ext}`;
    files.set(name, { body, type: TYPES[ext] ?? 'application/octet-stream' });
    urls[key] = `${prefix}/${name}`;
  }
  return { urls, files };
}
