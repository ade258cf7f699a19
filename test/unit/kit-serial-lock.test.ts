import { expect } from 'chai';
import { SerialLock } from '../../core';

/*
 * The serial lock. Proves: sections never overlap and run in call order even when later ones
 * are quicker; a failing section rejects only its own caller and does not block the next;
 * a synchronous throw is a rejection; results pass through.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('kit: serial lock', () => {
  it('runs sections one at a time, in call order', async () => {
    const lock = new SerialLock();
    const events: string[] = [];
    let inside = 0;
    const section = (name: string, ms: number) =>
      lock.run(async () => {
        inside++;
        expect(inside, 'overlap').to.equal(1);
        events.push(`${name}+`);
        await sleep(ms);
        events.push(`${name}-`);
        inside--;
        return name;
      });
    const results = await Promise.all([section('a', 30), section('b', 1), section('c', 10)]);
    expect(results).to.deep.equal(['a', 'b', 'c']);
    expect(events).to.deep.equal(['a+', 'a-', 'b+', 'b-', 'c+', 'c-']);
    expect(lock.pending).to.equal(0);
  });

  it('a failure rejects its caller only; the next section still runs', async () => {
    const lock = new SerialLock();
    const failing = lock.run(async () => {
      await sleep(5);
      throw new Error('boom');
    });
    const sync = lock.run(() => {
      throw new Error('sync boom');
    });
    const next = lock.run(async () => 42);
    const settled = await Promise.allSettled([failing, sync, next]);
    expect(settled.map((s) => s.status)).to.deep.equal(['rejected', 'rejected', 'fulfilled']);
    expect((settled[1] as PromiseRejectedResult).reason.message).to.equal('sync boom');
    expect((settled[2] as PromiseFulfilledResult<number>).value).to.equal(42);
  });
});
