import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../platform/database/database.js';
import type { PeopleTables } from './people.table.js';

export type PeopleDatabase = Database & PeopleTables;
export type PeopleDb = Kysely<PeopleDatabase>;
export type PeopleQ = Kysely<PeopleDatabase> | Transaction<PeopleDatabase>;

/** The application's database handle, typed with the people tables as well. */
export function peopleDb(db: Kysely<Database>): PeopleDb {
  return db.withTables<PeopleTables>();
}

/** A transaction of the application's handle, typed with the people tables as well. */
export function peopleTrx(trx: Transaction<Database>): Transaction<PeopleDatabase> {
  return trx.withTables<PeopleTables>();
}
