import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import pino from 'pino';
import { DomainError } from '../../core/errors';
import { Firewall } from '../../core/firewall/firewall';
import { HostError, type Host, type RunOptions, type RunResult } from '../../core/hosts/host';
import { LocalHost } from '../../core/hosts/local-host';
import { requirePrerequisite } from '../helpers/prereq';

/*
 * Real nftables inside a network namespace this suite creates, so the machine's own
 * ruleset is never touched. Proves: our table is replaced atomically and exactly, foreign
 * tables (including one with our name in another family) survive, NAT is rendered live,
 * counters count real packets, invalid input never reaches nft, unmanaged mode degrades.
 */

/** Wraps a host, recording every argv and optionally rewriting the next nft script. */
class RecordingHost implements Host {
  readonly calls: string[][] = [];
  corruptNextScript = false;
  /** When set, every run() rejects with it (a host where the program does not exist). */
  failRunsWith: Error | undefined;
  constructor(
    private readonly inner: Host,
    readonly id = inner.id,
  ) {}
  async run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    this.calls.push([...argv]);
    if (this.failRunsWith) throw this.failRunsWith;
    if (this.corruptNextScript && options?.stdin !== undefined) {
      this.corruptNextScript = false;
      // Valid script, then one statement nft refuses: the whole transaction must fail.
      return this.inner.run(argv, { ...options, stdin: `${String(options.stdin)}\nadd rule inet polygate nosuchchain accept\n` });
    }
    return this.inner.run(argv, options);
  }
  spawn = (...a: Parameters<Host['spawn']>) => this.inner.spawn(...a);
  readFile = (p: string) => this.inner.readFile(p);
  writeFileAtomic = (p: string, d: string | Buffer, m?: number) => this.inner.writeFileAtomic(p, d, m);
  mkdirp = (p: string, m?: number) => this.inner.mkdirp(p, m);
  remove = (p: string) => this.inner.remove(p);
  exists = (p: string) => this.inner.exists(p);
  openStream = (t: Parameters<Host['openStream']>[0]) => this.inner.openStream(t);
  close = () => this.inner.close();
}

function captureLogger() {
  const lines: { level: number; msg: string; reason?: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, sink), warnings: () => lines.filter((l) => l.level === 40) };
}

type NftRule = { rule: { chain: string; comment?: string; expr: Record<string, unknown>[] } };

describe('Firewall (nftables, integration in a network namespace)', function () {
  const ns = `pg-fw-${randomBytes(3).toString('hex')}`;
  let created = false;
  let host: LocalHost;

  const nft = (...args: string[]) => execFileSync('ip', ['netns', 'exec', ns, 'nft', ...args], { encoding: 'utf8', stdio: 'pipe' });
  const listJson = (family: string, table: string) => JSON.parse(nft('-j', 'list', 'table', family, table)) as { nftables: unknown[] };
  const rulesOf = (family: string, table: string) =>
    listJson(family, table).nftables.filter((i): i is NftRule => typeof i === 'object' && i !== null && 'rule' in i).map((i) => i.rule);
  const ourPorts = () =>
    rulesOf('inet', 'polygate')
      .filter((r) => r.chain === 'input')
      .map((r) => {
        const match = r.expr.find((e) => 'match' in e)!.match as { left: { payload: { protocol: string } }; right: number };
        return `${match.right}/${match.left.payload.protocol}:${r.comment}`;
      });
  const expectForeignIntact = () => {
    const other = rulesOf('inet', 'other');
    expect(other.map((r) => r.comment)).to.deep.equal(['foreign-keep-me']);
    expect(rulesOf('ip', 'polygate').map((r) => r.comment)).to.deep.equal(['same-name-other-family']);
  };

  before(function () {
    requirePrerequisite(this, process.getuid?.() === 0, 'firewall integration: not running as root');
    let nftOk = true;
    try {
      execFileSync('nft', ['--version'], { stdio: 'pipe' });
    } catch {
      nftOk = false;
    }
    requirePrerequisite(this, nftOk, 'firewall integration: nft not installed (apt-get install nftables)');
    let nsError = '';
    try {
      execFileSync('ip', ['netns', 'add', ns], { stdio: 'pipe' });
      created = true;
      execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up'], { stdio: 'pipe' });
    } catch (e) {
      nsError = (e as Error).message.split('\n')[0]!;
    }
    requirePrerequisite(this, nsError === '', `firewall integration: cannot create a network namespace (${nsError})`);
    // Someone else's rules, created before polygate starts: they must survive everything.
    execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], {
      input: [
        'table inet other {',
        '  chain input { type filter hook input priority 10; policy accept;',
        '    tcp dport 9999 counter accept comment "foreign-keep-me"',
        '  }',
        '}',
        'table ip polygate {',
        '  chain c { udp dport 5353 accept comment "same-name-other-family"; }',
        '}',
      ].join('\n'),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    host = new LocalHost({ id: 'fw-test', netns: ns });
  });

  after(() => {
    if (created) execFileSync('ip', ['netns', 'del', ns], { stdio: 'pipe' });
  });

  it('detects that it can manage nftables (root, nft present)', async () => {
    const fw = new Firewall({ host });
    expect(fw.state()).to.deep.include({ managed: false });
    expect(await fw.detect()).to.deep.equal({ managed: true });
    expect(fw.state()).to.deep.equal({ managed: true });
  });

  it('opens exactly the declared ports, with owner comments and counters, leaving foreign tables alone', async () => {
    const fw = new Firewall({ host });
    const res = await fw.apply({
      openPorts: [
        { port: 1194, protocol: 'udp', owner: 'openvpn' },
        { port: 443, protocol: 'tcp', owner: 'ocserv' },
        { port: 51820, protocol: 'udp', owner: 'wireguard:node_1' },
      ],
    });
    expect(res).to.deep.equal({ applied: true });
    expect(ourPorts()).to.deep.equal(['443/tcp:ocserv', '1194/udp:openvpn', '51820/udp:wireguard:node_1']);
    const chain = listJson('inet', 'polygate').nftables.find((i) => typeof i === 'object' && i !== null && 'chain' in i) as {
      chain: { hook: string; policy: string; prio: number };
    };
    expect(chain.chain).to.deep.include({ hook: 'input', policy: 'accept', prio: 0 });
    for (const r of rulesOf('inet', 'polygate')) expect(r.expr.some((e) => 'counter' in e)).to.equal(true);
    expectForeignIntact();
  });

  it('re-apply with fewer ports removes the dropped ones (declarative, whole-table replace)', async () => {
    const fw = new Firewall({ host });
    await fw.apply({ openPorts: [{ port: 1194, protocol: 'udp', owner: 'openvpn' }, { port: 443, protocol: 'tcp', owner: 'ocserv' }] });
    await fw.apply({ openPorts: [{ port: 1194, protocol: 'udp', owner: 'openvpn' }] });
    expect(ourPorts()).to.deep.equal(['1194/udp:openvpn']);
    await fw.apply({ openPorts: [] });
    expect(ourPorts()).to.deep.equal([]);
    expectForeignIntact();
  });

  it('renders NAT masquerade for client subnets', async () => {
    const fw = new Firewall({ host });
    await fw.apply({
      openPorts: [{ port: 1194, protocol: 'udp', owner: 'openvpn' }],
      nat: [{ sourceCidr: '10.8.0.0/24', outInterface: 'eth0' }, { sourceCidr: '10.9.0.5/16' }],
    });
    const nat = rulesOf('inet', 'polygate').filter((r) => r.chain === 'postrouting');
    expect(nat).to.have.length(2);
    for (const r of nat) expect(r.expr.some((e) => 'masquerade' in e)).to.equal(true);
    const live = await fw.inspect();
    expect(live!.nat.map(({ sourceCidr, outInterface }) => ({ sourceCidr, outInterface }))).to.deep.equal([
      { sourceCidr: '10.8.0.0/24', outInterface: 'eth0' },
      { sourceCidr: '10.9.0.0/16', outInterface: undefined },
    ]);
    // Dropping NAT from the desired state removes the nat chain entirely.
    await fw.apply({ openPorts: [] });
    expect(rulesOf('inet', 'polygate').filter((r) => r.chain === 'postrouting')).to.deep.equal([]);
    expectForeignIntact();
  });

  it('counts real packets on the accept rule (the rules are live in the kernel)', async () => {
    const fw = new Firewall({ host });
    const port = 20000 + Math.floor(Math.random() * 20000);
    await fw.apply({ openPorts: [{ port, protocol: 'tcp', owner: 'probe' }] });
    // Inside the namespace: listen, connect, exchange a line.
    const script = `const n=require('net');const s=n.createServer(c=>c.end('hi')).listen(${port},'127.0.0.1',()=>{n.connect(${port},'127.0.0.1').on('data',d=>{process.stdout.write(d);s.close();}).on('end',()=>process.exit(0))});setTimeout(()=>process.exit(2),5000)`;
    const r = await host.run([process.execPath, '-e', script], { timeoutMs: 10_000 });
    expect(r.stdout).to.equal('hi');
    const live = await fw.inspect();
    expect(live!.openPorts).to.have.length(1);
    expect(live!.openPorts[0]!.packets).to.be.greaterThan(0);
    expect(live!.openPorts[0]!.bytes).to.be.greaterThan(0);
  });

  it('rejects invalid input before nft runs, leaving the live table unchanged', async () => {
    const rec = new RecordingHost(host);
    const fw = new Firewall({ host: rec });
    await fw.apply({ openPorts: [{ port: 8443, protocol: 'tcp', owner: 'panel' }] });
    const loadsBefore = rec.calls.filter((c) => c.includes('-f')).length;
    const bad: unknown[] = [
      { openPorts: [{ port: 70000, protocol: 'tcp', owner: 'x' }] },
      { openPorts: [{ port: 80, protocol: 'sctp', owner: 'x' }] },
      { openPorts: [], nat: [{ sourceCidr: '10.0.0.0/8; flush ruleset' }] },
      { openPorts: [], nat: [{ sourceCidr: '10.0.0.0/8', outInterface: 'eth0"; flush ruleset' }] },
    ];
    for (const d of bad) {
      const err = await fw.apply(d as never).then(
        () => expect.fail('should reject'),
        (e: unknown) => e as DomainError,
      );
      expect(err).to.be.instanceOf(DomainError);
      expect(err.kind).to.equal('invalid');
    }
    expect(rec.calls.filter((c) => c.includes('-f')).length).to.equal(loadsBefore);
    expect(ourPorts()).to.deep.equal(['8443/tcp:panel']);
    expectForeignIntact();
  });

  it('a script nft refuses changes nothing (one transaction: the delete is rolled back too)', async () => {
    const rec = new RecordingHost(host);
    const fw = new Firewall({ host: rec });
    await fw.apply({ openPorts: [{ port: 8443, protocol: 'tcp', owner: 'panel' }] });
    rec.corruptNextScript = true;
    const err = await fw.apply({ openPorts: [{ port: 9000, protocol: 'udp', owner: 'new' }] }).then(
      () => expect.fail('should reject'),
      (e: unknown) => e as DomainError,
    );
    expect(err.kind).to.equal('unavailable');
    expect(err.message).to.match(/firewall apply failed on fw-test: nft exited/);
    expect(ourPorts()).to.deep.equal(['8443/tcp:panel']);
    expectForeignIntact();
  });

  it('serializes concurrent applies: the last call wins', async () => {
    const fw = new Firewall({ host });
    await Promise.all([1001, 1002, 1003, 1004, 1005].map((port) => fw.apply({ openPorts: [{ port, protocol: 'tcp', owner: `p${port}` }] })));
    expect(ourPorts()).to.deep.equal(['1005/tcp:p1005']);
  });

  it('remove() deletes only our table, and is harmless when it is already gone', async () => {
    const fw = new Firewall({ host });
    await fw.apply({ openPorts: [{ port: 22, protocol: 'tcp', owner: 'ssh' }] });
    await fw.remove();
    expect(nft('list', 'tables').trim().split('\n').sort()).to.deep.equal(['table inet other', 'table ip polygate']);
    await fw.remove();
    expect(await fw.inspect()).to.equal(null);
    expectForeignIntact();
  });

  describe('unmanaged mode', () => {
    it('nft binary absent (ENOENT from the host): logs once, records desired state, apply is a no-op', async () => {
      const rec = new RecordingHost(host, 'no-nft');
      rec.failRunsWith = new HostError('no-nft', 'not_found', 'nft not found on no-nft (spawn nft ENOENT)');
      const { logger, warnings } = captureLogger();
      const fw = new Firewall({ host: rec, logger });
      const desired = { openPorts: [{ port: 1194, protocol: 'udp' as const, owner: 'openvpn' }] };
      expect(await fw.apply(desired)).to.deep.equal({ applied: false });
      expect(await fw.apply(desired)).to.deep.equal({ applied: false });
      await fw.remove();
      const state = fw.state();
      expect(state.managed).to.equal(false);
      expect(state.managed === false && state.reason).to.match(/nft not found on no-nft/);
      expect(fw.desired()).to.deep.equal(desired);
      expect(warnings()).to.have.length(1);
      expect(warnings()[0]!.msg).to.match(/firewall unmanaged/);
      expect(rec.calls).to.deep.equal([['nft', 'list', 'tables']]); // detected once, nothing loaded
      // Invalid input is still refused while unmanaged.
      const err = await fw.apply({ openPorts: [{ port: 0, protocol: 'tcp', owner: 'x' }] }).then(
        () => expect.fail('should reject'),
        (e: unknown) => e as DomainError,
      );
      expect(err.kind).to.equal('invalid');
    });

    it('nftPath pointing at a missing binary inside the namespace is unmanaged too', async () => {
      const fw = new Firewall({ host, nftPath: '/nonexistent/nft', logger: captureLogger().logger });
      expect(await fw.detect()).to.deep.equal({ managed: false, reason: 'nft not found on fw-test (/nonexistent/nft); install nftables' });
      expect(await fw.apply({ openPorts: [{ port: 1, protocol: 'tcp', owner: 'x' }] })).to.deep.equal({ applied: false });
    });

    it('not running as root is unmanaged without even trying nft', async () => {
      const rec = new RecordingHost(host);
      const fw = new Firewall({ host: rec, processUid: () => 1000, logger: captureLogger().logger });
      expect(await fw.detect()).to.deep.equal({ managed: false, reason: 'not running as root (uid 1000); nftables needs root' });
      expect(rec.calls).to.deep.equal([]);
    });

    it('detect(true) re-checks, e.g. after nft gets installed', async () => {
      const flaky = new RecordingHost(host);
      flaky.failRunsWith = new HostError('fw-test', 'not_found', 'nft not found');
      const fw = new Firewall({ host: flaky, logger: captureLogger().logger });
      expect((await fw.detect()).managed).to.equal(false);
      flaky.failRunsWith = undefined;
      expect((await fw.detect()).managed).to.equal(false); // cached
      expect(await fw.detect(true)).to.deep.equal({ managed: true });
    });
  });
});
