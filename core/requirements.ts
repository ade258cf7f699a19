import { loadPluginDefinition } from './plugin/registry';
import type { ProgramRequirement } from './plugin/types';
import { PROTOCOLS } from './protocols/table';

/** What the panel itself runs on every host it manages (the CA, namespaces and links). */
export const PANEL_REQUIREMENTS: readonly ProgramRequirement[] = [
  { program: 'openssl', debianPackages: ['openssl'] },
  { program: 'ip', alsoAt: ['/usr/sbin/ip', '/sbin/ip'], debianPackages: ['iproute2'] },
  // Daemons are started in their own session, so they outlive the panel and its SSH channel.
  { program: 'setsid', alsoAt: ['/usr/bin/setsid'], debianPackages: ['util-linux'] },
];

/** What the firewall service runs (nftables table `inet polygate`). */
export const FIREWALL_REQUIREMENTS: readonly ProgramRequirement[] = [{ program: 'nft', alsoAt: ['/usr/sbin/nft'], debianPackages: ['nftables'] }];

/**
 * What a plugin's daemon needs, from the plugin's own definition; empty for a plugin that
 * cannot be loaded (its own error says why when the daemon loads it).
 */
export function pluginRequirements(pluginName: string): readonly ProgramRequirement[] {
  try {
    return loadPluginDefinition(pluginName).requirements ?? [];
  } catch {
    return [];
  }
}

/** Every known protocol plugin by name, with what it needs. */
export function allPluginRequirements(): ReadonlyArray<{ plugin: string; requirements: readonly ProgramRequirement[] }> {
  return PROTOCOLS.map((p) => ({ plugin: p.pluginName, requirements: pluginRequirements(p.pluginName) }));
}
