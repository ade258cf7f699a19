export * from './policy';
export { Enforcer, type EnforcementResult, type PollClock } from './enforcer';
export { loadFacts, type FactsSnapshot } from './user-facts';
