import type { Host } from '../../hosts/host';
import type { Logger } from '../../logger';
import { unavailable } from '../../errors';
import type { SessionEnded } from '../types';

export interface EndedRecordFolderOptions {
  host: Host;
  /** Where the daemon's hook (a disconnect script, pppd's ip-down…) writes one file per ended session. */
  dir: string;
  /** The durable list of record names already reported (JSON array), beside the records. */
  reportedPath: string;
  /** Which file names are complete records (temporary files of an atomic write are not). */
  isRecord(name: string): boolean;
  /** The ended session a record holds, or null when it is unreadable (it is then removed). */
  parse(name: string, text: string): SessionEnded | null;
  /** Where each ended session goes (`ctx.sessionEnded`); resolves once the panel holds it durably. */
  report(ended: SessionEnded): Promise<void> | void;
  logger?: Logger;
  /** Time limit of listing the directory. Default 10 s. */
  timeoutMs?: number;
}

/**
 * Reports the final counters a daemon's hook left on the host, and deletes a record only once
 * the panel holds it durably (`report` resolved): a record is never lost to a panel crash, an
 * outage or a failed write, and it is retried on the next fold until it is taken. A record the
 * panel took enters a durable "reported" list on the host before its file is removed, so one
 * taken but not yet removed is not reported again; names whose files are gone leave the list.
 * Should a record still be reported twice (the panel stopped between taking it and the list
 * write), the panel counts nothing twice: it adds final counters minus those already counted
 * under the session key. Folds run one at a time.
 *
 * @example
 * const folder = new EndedRecordFolder({ host, dir: `${stateDir}/ended`, reportedPath: `${stateDir}/ended-reported.json`,
 *   isRecord: (n) => n.endsWith('.rec'), parse: (n, text) => parseMyRecord(text), report: (e) => ctx.sessionEnded(e) });
 * await folder.fold(); // after every poll
 */
export class EndedRecordFolder {
  private reported: Set<string> | undefined;
  private folding: Promise<void> = Promise.resolve();

  constructor(private readonly options: EndedRecordFolderOptions) {}

  fold(): Promise<void> {
    const next = this.folding.then(() => this.foldOnce());
    this.folding = next.catch(() => undefined);
    return next;
  }

  private async foldOnce(): Promise<void> {
    const { host, dir, isRecord } = this.options;
    const file = (name: string) => `${dir.replace(/\/+$/, '')}/${name}`;
    if (this.reported === undefined) {
      const text = (await host.readFile(this.options.reportedPath).catch(() => Buffer.from('[]'))).toString('utf8');
      try {
        const list = JSON.parse(text) as unknown;
        this.reported = new Set(Array.isArray(list) ? list.filter((n): n is string => typeof n === 'string' && isRecord(n)) : []);
      } catch {
        this.reported = new Set();
      }
    }
    const r = await host.run(['find', dir, '-maxdepth', '1', '-type', 'f', '-printf', '%f\\n'], { timeoutMs: this.options.timeoutMs ?? 10_000 });
    if (r.code !== 0) throw unavailable(`listing ${dir} on ${host.id} failed: ${r.stderr.trim().slice(0, 200)}`);
    const names = r.stdout.split('\n').filter((n) => n && isRecord(n)).sort();
    const fresh: Array<{ name: string; ended: SessionEnded }> = [];
    for (const name of names) {
      if (this.reported.has(name)) continue;
      const text = (await host.readFile(file(name)).catch(() => null))?.toString('utf8');
      const ended = text === undefined ? null : this.options.parse(name, text);
      if (!ended) {
        this.options.logger?.warn({ name }, 'ignoring an unreadable ended-session record');
        await host.remove(file(name));
        continue;
      }
      fresh.push({ name, ended });
    }
    const present = new Set(names);
    const stale = [...this.reported].filter((n) => !present.has(n));
    if (!fresh.length && !stale.length) return;
    for (const n of stale) this.reported.delete(n);
    const taken: string[] = [];
    let refused: unknown;
    for (const f of fresh) {
      try {
        await this.options.report(f.ended);
        taken.push(f.name);
      } catch (err) {
        refused = err;
        break;
      }
    }
    for (const n of taken) this.reported.add(n);
    await host.writeFileAtomic(this.options.reportedPath, JSON.stringify([...this.reported]), 0o600);
    for (const n of taken) await host.remove(file(n));
    if (refused !== undefined) {
      this.options.logger?.warn({ err: (refused as Error).message, kept: fresh.length - taken.length }, 'the panel did not take every ended-session record; the rest are kept and reported on the next fold');
    }
  }
}
