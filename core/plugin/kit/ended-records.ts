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
  /** Where each ended session goes, once (`ctx.sessionEnded`). */
  report(ended: SessionEnded): void;
  logger?: Logger;
  /** Time limit of listing the directory. Default 10 s. */
  timeoutMs?: number;
}

/**
 * Reports the final counters a daemon's hook left on the host exactly once. A record's name
 * enters the durable "reported" list before `report` is called (core journals it at once) and
 * the file is removed after; names whose files are gone leave the list. So a panel restart
 * before a record was folded reports it on the next fold, one after never reports it twice.
 * Folds run one at a time.
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
    for (const f of fresh) this.reported.add(f.name);
    await host.writeFileAtomic(this.options.reportedPath, JSON.stringify([...this.reported]), 0o600);
    for (const f of fresh) this.options.report(f.ended);
    for (const f of fresh) await host.remove(file(f.name));
  }
}
