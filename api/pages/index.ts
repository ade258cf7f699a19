import type express from 'express';
import type { Services } from '../../core/services';

// Shell only: /sub and /download are being written (replace this whole file).
export function mountPublicPages(_app: express.Express, _services: Services): void {}
