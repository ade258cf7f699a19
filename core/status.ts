/** One component's health as shown by `/api/v1/health`. */
export interface ComponentStatus {
  state: 'ok' | 'unmanaged' | 'unavailable' | 'degraded';
  reason?: string;
}

/** Components (firewall, plugins, database) register how to report themselves here. */
export class StatusBoard {
  private readonly sources = new Map<string, () => ComponentStatus>();
  register(name: string, source: () => ComponentStatus): void {
    this.sources.set(name, source);
  }
  snapshot(): Record<string, ComponentStatus> {
    const out: Record<string, ComponentStatus> = {};
    for (const [name, source] of this.sources) {
      try {
        out[name] = source();
      } catch (e) {
        out[name] = { state: 'degraded', reason: (e as Error).message };
      }
    }
    return out;
  }
}
