/** Who is calling: the main admin, or one reseller (sub-admin). Every service call takes one. */
export type Principal = { kind: 'main' } | { kind: 'sub_admin'; subAdminId: number; username: string };

export const MAIN_ADMIN: Principal = Object.freeze({ kind: 'main' });

export const isMainAdmin = (p: Principal): p is { kind: 'main' } => p.kind === 'main';
