// Quiet logs unless a developer asks for them.
process.env.NODE_ENV = 'test';
process.env.POLYGATE_LOG_LEVEL ??= 'silent';
