import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** 32 random bytes (256 bits) as base64url: 43 characters, URL- and form-safe. */
export function randomSecret(bytes = 32): string {
  if (bytes < 32) throw new TypeError('secrets carry at least 256 random bits');
  return randomBytes(bytes).toString('base64url');
}

/**
 * Keyed hash of a secret for storage and lookup: HMAC-SHA256(pepper, secret). Secrets are random,
 * so a slow password hash would add nothing but CPU; the pepper keeps a stolen table useless.
 */
export function hashSecret(pepper: Buffer, secret: string, purpose: string): Buffer {
  return createHmac('sha256', pepper).update(purpose).update('\0').update(secret, 'utf8').digest();
}

/** Constant-time equality of two byte strings (false, not an exception, on length mismatch). */
export function safeEqual(a: Buffer, b: Buffer): boolean {
  if (a.length !== b.length) {
    // Still spend the time of a comparison so length is not a timing oracle.
    timingSafeEqual(a, a);
    return false;
  }
  return timingSafeEqual(a, b);
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** Fixed-width base62 of an unsigned 32-bit number (6 characters). */
export function base62u32(n: number): string {
  let out = '';
  let v = n >>> 0;
  for (let i = 0; i < 6; i++) {
    out = BASE62[v % 62] + out;
    v = Math.floor(v / 62);
  }
  return out;
}

/** Random base62 string with at least `bits` bits of entropy (rejection sampling, no modulo bias). */
export function randomBase62(bits = 256): string {
  const len = Math.ceil(bits / Math.log2(62));
  let out = '';
  while (out.length < len) {
    for (const b of randomBytes(len * 2)) {
      if (b < 248) out += BASE62[b % 62];
      if (out.length === len) break;
    }
  }
  return out;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE), the checksum GitHub-style tokens carry so scanners can tell a token from noise. */
export function crc32(s: string): number {
  let c = 0xffffffff;
  for (const b of Buffer.from(s, 'utf8')) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * A family of prefixed, checksummed bearer tokens: `<prefix><43 base62 chars: 256 random bits><6 chars:
 * CRC-32 of the body>`. Secret scanners recognise the prefix; the checksum lets a mistyped or made-up
 * token be refused without a database look-up.
 */
export function checksummedTokens(prefix: string) {
  const re = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}([0-9A-Za-z]{43})([0-9A-Za-z]{6})$`);
  return {
    prefix,
    generate(): string {
      const body = randomBase62(256);
      if (body.length !== 43) throw new Error('unexpected token body length');
      return `${prefix}${body}${base62u32(crc32(body))}`;
    },
    /** Shape and checksum check; true only for a well-formed token of this family. */
    isWellFormed(token: string): boolean {
      const m = re.exec(token);
      return !!m && base62u32(crc32(m[1]!)) === m[2];
    },
  };
}
