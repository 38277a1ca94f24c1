import type { Config } from '../platform/config.js';
import type { Db } from '../platform/database/database.js';
import type { RewrapResult, RewrapTarget } from '../platform/crypto/rewrap.js';
import { providerTokensRewrapTarget } from '../provider-tokens/rewrap-target.js';
import { signingKeysRewrapTarget } from '../signing-keys/rewrap-target.js';
import { CLI_ACTOR, CliError, flags, print, withRuntime, type Command } from './context.js';

/*
 * Changing the master key (nothing is unreadable at any step):
 * 1. Generate a key: `openssl rand -base64 32`.
 * 2. On every instance set TESSERA_MASTER_KEY=<new> and TESSERA_PREVIOUS_MASTER_KEYS=<old>[,<older>...]
 *    and roll out: new writes are sealed under the new key, old rows still open with the previous one.
 * 3. Run `tessera keys rewrap` (same environment; `--dry-run` shows rows per key id). It re-seals in
 *    short batches, audits each batch, and can be re-run at will; it exits 1 and names the rows it
 *    could not open (their key is missing from TESSERA_PREVIOUS_MASTER_KEYS).
 * 4. When it reports `remaining: 0` for every target, drop the old key from
 *    TESSERA_PREVIOUS_MASTER_KEYS and roll out again. Keep a backup of the old key until backups
 *    taken before the rewrap have expired.
 */

/** Everything sealed under the master key. Features that seal data add their target here. */
export const REWRAP_TARGETS: RewrapTarget[] = [signingKeysRewrapTarget, providerTokensRewrapTarget];

/** Runs every target (or the named ones); what `tessera keys rewrap` does, callable from tests. */
export async function rewrapAll(
  db: Db,
  config: Pick<Config, 'masterKey' | 'previousMasterKeys'>,
  opts: { batchSize?: number; only?: string[]; targets?: RewrapTarget[] } = {},
): Promise<RewrapResult[]> {
  const targets = (opts.targets ?? REWRAP_TARGETS).filter((t) => !opts.only?.length || opts.only.includes(t.name));
  const results: RewrapResult[] = [];
  for (const t of targets) {
    results.push(
      await t.rewrap(db, {
        current: config.masterKey,
        keys: [config.masterKey, ...config.previousMasterKeys],
        batchSize: opts.batchSize ?? 100,
        actor: CLI_ACTOR,
      }),
    );
  }
  return results;
}

export const rewrapCommand: Command = {
  name: 'keys rewrap',
  usage: 'tessera keys rewrap [--target NAME[,NAME]] [--batch-size N] [--dry-run]',
  summary: 're-encrypt data sealed under TESSERA_PREVIOUS_MASTER_KEYS with TESSERA_MASTER_KEY (idempotent; safe while serving)',
  async run(argv) {
    const { values } = flags(argv, { target: { type: 'string' }, 'batch-size': { type: 'string' }, 'dry-run': { type: 'boolean' } }, this.usage);
    const batchSize = values['batch-size'] === undefined ? 100 : Number(values['batch-size']);
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) throw new CliError('--batch-size takes a whole number from 1 to 10000');
    const only =
      values.target
        ?.split(',')
        .map((s) => s.trim())
        .filter(Boolean) ?? [];
    const unknown = only.filter((n) => !REWRAP_TARGETS.some((t) => t.name === n));
    if (unknown.length) throw new CliError(`unknown target(s) ${unknown.join(', ')}; choose from ${REWRAP_TARGETS.map((t) => t.name).join(', ')}`);
    await withRuntime(async ({ handle, config }) => {
      if (values['dry-run']) {
        const census: Record<string, Record<string, number>> = {};
        for (const t of REWRAP_TARGETS) if (!only.length || only.includes(t.name)) census[t.name] = await t.census(handle.db);
        print({ current_key_id: config.masterKey.id, previous_key_ids: config.previousMasterKeys.map((k) => k.id), rows_by_key: census });
        return;
      }
      const results = await rewrapAll(handle.db, config, { batchSize, only });
      print({ current_key_id: config.masterKey.id, results });
      const failed = results.reduce((n, r) => n + r.failed.length, 0);
      if (failed > 0) {
        throw new CliError(
          `${failed} row(s) could not be decrypted with the configured keys and were left as they were; ` +
            'add the key that sealed them to TESSERA_PREVIOUS_MASTER_KEYS and run again',
        );
      }
    });
  },
};
