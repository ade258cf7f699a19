import { expect } from 'chai';
import { logger } from '../../core/logger';
import type { DesiredState, DesiredUser, ListenerSpec, PluginCapabilities, PluginContext, ProtocolPluginDefinition, ProtocolPluginInstance, SessionPoll } from '../../core/plugin/types';
import { STATUS_FORMATS } from '../../core/protocols/status-formats';
import { requirePrerequisite } from '../helpers/prereq';

/**
 * What every protocol plugin must do, whatever its daemon: run it with `describePluginConformance`
 * from the plugin's own test file, handing over a way to make instances and (where a real
 * client exists) to connect one. Each case states the promise it checks.
 */
export interface ConformanceInstance {
  instance: ProtocolPluginInstance;
  /** Stops the daemons and removes what the instance made. */
  cleanup(): Promise<void>;
}

export interface ConformanceSubject {
  name: string;
  definition: ProtocolPluginDefinition<unknown>;
  /** Why this machine cannot run the subject (missing binary, not root), or null. */
  missing(): string | null;
  /** A fresh instance on its own host and state directory; `config` overrides its configuration. */
  create(config?: Record<string, unknown>): Promise<ConformanceInstance>;
  /** A configuration under which the daemon cannot run (a binary path that does not exist). */
  brokenConfig: Record<string, unknown>;
  /** Two users with whatever material the protocol needs, and the listeners to use. */
  users: readonly [DesiredUser, DesiredUser];
  listeners: readonly ListenerSpec[];
  settings?: DesiredState['settings'];
  /**
   * Connects a real client as `user` and resolves once the daemon lists the session; the
   * returned `close` ends the client. Absent where no client can run here.
   */
  connect?(target: ConformanceInstance, user: DesiredUser): Promise<{ close(): Promise<void> }>;
  /** Longest a poll may take to show a change (cuts take a moment on real daemons). */
  settleMs?: number;
}

function usernamesIn(poll: SessionPoll): string[] | null {
  return poll.kind === 'sessions' ? poll.sessions.map((s) => s.username).sort() : null;
}

/** Polls until `check` holds, bounded. */
async function eventually(instance: ProtocolPluginInstance, check: (poll: SessionPoll) => boolean, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last: SessionPoll | undefined;
  while (Date.now() < end) {
    last = await instance.pollSessions();
    if (check(last)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last poll: ${JSON.stringify(last).slice(0, 400)}`);
}

/** Whether the poll lists a session of `username` (status text is matched on the name, which every format carries). */
function lists(poll: SessionPoll, username: string, materialKey?: string): boolean {
  if (poll.kind === 'sessions') return poll.sessions.some((s) => s.username === username);
  return poll.texts.some((t) => t.text.includes(username) || (materialKey !== undefined && t.text.includes(materialKey)));
}

export function checkCapabilitiesShape(c: PluginCapabilities): void {
  expect(c.gatesLogins, 'gatesLogins').to.be.a('boolean');
  expect(c.reportsEndedSessions, 'reportsEndedSessions').to.be.a('boolean');
  expect(c.takesListeners, 'takesListeners').to.be.a('boolean');
  expect(['sessions', ...STATUS_FORMATS]).to.include(c.poll);
  expect(c.settings).to.be.an('array');
}

export function describePluginConformance(subject: ConformanceSubject): void {
  describe(`plugin conformance: ${subject.name}`, function () {
    this.timeout(120_000);
    const settle = subject.settleMs ?? 15_000;
    const state = (users: readonly DesiredUser[]): DesiredState => ({ users, listeners: subject.listeners, settings: subject.settings ?? {} });
    let target: ConformanceInstance | undefined;

    before(function () {
      const missing = subject.missing();
      requirePrerequisite(this, missing === null, missing ?? '');
    });
    afterEach(async () => {
      await target?.cleanup();
      target = undefined;
    });

    it('declares its API version, capabilities and a config schema that accepts {}', () => {
      expect(subject.definition.apiVersion).to.match(/^\d+\.\d+$/);
      checkCapabilitiesShape(subject.definition.capabilities);
      expect(subject.definition.configSchema.safeParse({}).success).to.equal(true);
    });

    it('answers availability with a verdict, and a daemon that cannot run is unavailable with a reason', async () => {
      target = await subject.create();
      expect(await target.instance.availability()).to.deep.equal({ available: true });
      await target.cleanup();
      target = await subject.create(subject.brokenConfig);
      const broken = await target.instance.availability();
      expect(broken.available).to.equal(false);
      expect((broken as { reason: string }).reason).to.be.a('string').and.not.equal('');
    });

    it('apply is idempotent: the same state twice changes nothing, and ports() names the listeners', async () => {
      target = await subject.create();
      await target.instance.apply(state(subject.users));
      const ports = await target.instance.ports();
      const poll = await target.instance.pollSessions();
      await target.instance.apply(state(subject.users));
      expect(await target.instance.ports()).to.deep.equal(ports);
      expect((await target.instance.pollSessions()).kind).to.equal(poll.kind);
      if (subject.definition.capabilities.takesListeners) {
        for (const l of subject.listeners) expect(ports.some((p) => p.port === l.port && p.protocol === l.protocol), `${l.port}/${l.protocol} in ports()`).to.equal(true);
      }
    });

    it('polls in the declared form; status text comes as non-empty, distinct scopes', async () => {
      target = await subject.create();
      await target.instance.apply(state(subject.users));
      const poll = await target.instance.pollSessions();
      const form = subject.definition.capabilities.poll;
      if (form === 'sessions') {
        expect(poll.kind).to.equal('sessions');
      } else {
        expect(poll).to.include({ kind: 'status-text', format: form });
        const texts = (poll as Extract<SessionPoll, { kind: 'status-text' }>).texts;
        expect(texts).to.be.an('array').that.is.not.empty;
        const scopes = texts.map((t) => t.scope);
        expect(scopes.every((s) => typeof s === 'string' && s.length > 0)).to.equal(true);
        expect(new Set(scopes).size).to.equal(scopes.length);
      }
      expect(usernamesIn(poll) ?? [], 'nobody is connected yet').to.deep.equal([]);
    });

    it('exactly these users: a user dropped from the state loses its session, the other keeps it', async function () {
      requirePrerequisite(this, !!subject.connect, `${subject.name}: no real client on this machine to connect with`);
      target = await subject.create();
      const [a, b] = subject.users;
      await target.instance.apply(state([a, b]));
      const clientA = await subject.connect!(target, a);
      const clientB = await subject.connect!(target, b);
      try {
        await target.instance.apply(state([a]));
        await eventually(target.instance, (p) => !lists(p, b.username, b.material.publicKey), `${b.username} to be gone`, settle);
        expect(lists(await target.instance.pollSessions(), a.username, a.material.publicKey), `${a.username} is undisturbed`).to.equal(true);
      } finally {
        await clientA.close();
        await clientB.close();
      }
    });

    it('disconnect({username}) ends that user\'s sessions', async function () {
      requirePrerequisite(this, !!subject.connect, `${subject.name}: no real client on this machine to connect with`);
      target = await subject.create();
      const [a] = subject.users;
      await target.instance.apply(state(subject.users));
      const client = await subject.connect!(target, a);
      try {
        await target.instance.disconnect({ username: a.username });
        await eventually(target.instance, (p) => !lists(p, a.username, a.material.publicKey), `${a.username} to be cut`, settle);
      } finally {
        await client.close();
      }
    });
  });
}

/**
 * A plugin context for conformance runs outside a daemon: the given host and state dir, a
 * silent logger, the system clock, a PKI only when the subject passes one, and a core that
 * allows every login (what is checked here is the plugin, not core's policy).
 */
export function conformanceContext<Config>(options: {
  config: Config;
  host: PluginContext<Config>['host'];
  stateDir: string;
  serverId?: string;
  clientPool?: string;
  pki?: PluginContext<Config>['pki'];
}): PluginContext<Config> {
  const noPki = () => Promise.reject(new Error('this conformance subject was given no PKI'));
  return {
    host: options.host,
    config: options.config,
    logger: logger.child({ conformance: true }),
    clock: { now: () => new Date() },
    serverId: options.serverId ?? options.host.id,
    stateDir: options.stateDir,
    clientPool: options.clientPool ?? '10.99.0.0/16',
    pki: options.pki ?? { caCertificate: noPki, serverCertificate: noPki, clientCertificate: noPki },
    authorize: async () => ({ allowed: true }),
    sessionEnded: () => Promise.resolve(),
  };
}
