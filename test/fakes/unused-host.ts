import type { Duplex } from 'node:stream';
import type { Host, HostProcess, RunOptions, RunResult, SpawnOptions, StreamTarget } from '../../core/hosts/host';

/**
 * A Host whose every operation fails with "not used": a test double subclasses it and
 * overrides only what the code under test may touch, so any other call shows up at once.
 */
export class UnusedHost implements Host {
  readonly id: string = 'fake';
  run(_argv: readonly string[], _options?: RunOptions): Promise<RunResult> {
    throw new Error('not used');
  }
  spawn(_argv: readonly string[], _options?: SpawnOptions): HostProcess {
    throw new Error('not used');
  }
  readFile(_path: string): Promise<Buffer> {
    throw new Error('not used');
  }
  writeFileAtomic(_path: string, _data: string | Buffer, _mode?: number): Promise<void> {
    throw new Error('not used');
  }
  mkdirp(_path: string, _mode?: number): Promise<void> {
    throw new Error('not used');
  }
  remove(_path: string): Promise<void> {
    throw new Error('not used');
  }
  exists(_path: string): Promise<boolean> {
    throw new Error('not used');
  }
  openStream(_target: StreamTarget): Promise<Duplex> {
    throw new Error('not used');
  }
  async close(): Promise<void> {}
}
