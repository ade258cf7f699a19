import { router } from '../trpc';

// Shell only: the real router is being written (replace this whole file).
export const portsRouter = router({});
