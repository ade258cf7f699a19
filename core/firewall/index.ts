export { Firewall, type FirewallOptions, type FirewallState } from './firewall';
export {
  renderRuleset,
  renderRemoval,
  validateDesired,
  parseTableJson,
  parseCidr,
  sanitizeOwner,
  DEFAULT_TABLE,
  type FirewallDesired,
  type OpenPort,
  type NatRule,
  type PortProtocol,
  type LiveTable,
  type LiveOpenPort,
  type LiveNatRule,
} from './nft-render';
