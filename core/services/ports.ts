import type { CoreContext } from '../context';
import type { Services } from './index';

// Shell only: the real service is being written (replace this whole file).
export class PortsService {
  constructor(
    protected readonly ctx: CoreContext,
    protected readonly services: Services,
  ) {}
}
