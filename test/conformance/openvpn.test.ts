import { randomBytes } from 'node:crypto';
import { LocalHost } from '../../core/hosts/local-host';
import { createPanelPki } from '../../core/pki';
import type { DesiredUser } from '../../core/plugin/types';
import openvpnPlugin from '../../plugins/openvpn';
import { NetLab, startOpenVpnClient, until, vpnLabMissing } from '../helpers/vpn-lab';
import { conformanceContext, describePluginConformance } from './plugin-conformance';

/**
 * The conformance suite against the real OpenVPN plugin: real `openvpn` servers in a network
 * namespace with certificates from the panel's CA (real openssl), and real `openvpn` clients in
 * another namespace configured from `renderClientConfig`.
 */
const SERVER_IP = '10.99.91.1';
const lab = new NetLab();
let server: LocalHost | undefined;
let client: LocalHost | undefined;
let pki: ReturnType<typeof createPanelPki> | undefined;
let crl = '';

const users: [DesiredUser, DesiredUser] = [
  { username: 'conf_alice', password: 'Alice-pass1', material: {} },
  { username: 'conf_bob', password: 'Bob-pass1', material: {} },
];

describe('OpenVPN conformance lab', () => {
  before(async function () {
    if (vpnLabMissing([['openvpn', '--version'], ['openssl', 'version']])) return;
    server = await lab.addNamespace('cfs');
    client = await lab.addNamespace('cfc');
    lab.link('cfs', SERVER_IP, 'cfc', '10.99.91.2');
    pki = createPanelPki({ host: new LocalHost(), dir: `${lab.dir}/pki` });
    crl = await pki.crl();
  });
  after(() => lab.cleanup());

  describePluginConformance({
    name: 'openvpn (real OpenVPN in namespaces)',
    definition: openvpnPlugin as never,
    missing: () => vpnLabMissing([['openvpn', '--version'], ['openssl', 'version']]),
    brokenConfig: { openvpnPath: '/nonexistent/openvpn' },
    users,
    listeners: [{ port: 1194, protocol: 'udp' }],
    get settings() {
      return { pki_crl: crl };
    },
    async create(config = {}) {
      const stateDir = `${lab.dir}/ovpn-${randomBytes(3).toString('hex')}`;
      const instance = openvpnPlugin.create(
        conformanceContext({ config: openvpnPlugin.configSchema.parse({ keepaliveInterval: 1, keepaliveTimeout: 6, ...config }), host: server!, stateDir, serverId: 'main', clientPool: '10.8.0.0/16', pki }),
      );
      return { instance, cleanup: () => instance.stop() };
    },
    async connect(target, user) {
      const profile = await target.instance.renderClientConfig!(user, [{ host: SERVER_IP, port: 1194, protocol: 'udp' }]);
      const c = await startOpenVpnClient(lab, client!, `${user.username}-${randomBytes(2).toString('hex')}`, profile, [user.username, user.password!]);
      await until(() => c.connected(), `${user.username} to connect`, 30_000);
      return { close: () => c.stop() };
    },
  });
});
