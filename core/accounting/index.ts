export { AccountingEngine, type AccountingEngineOptions, type TickReport } from './engine';
export { AccountingJournal, JOURNAL_SHARDS, type PendingEnded, type JournalEntry } from './journal';
export { LiveSessions, type LiveConnection } from './live-sessions';
export { AccountingMetrics } from './metrics';
export { createSessionTracker, trackerInfo, type SessionTracker } from './tracker';
export { BatchedUsageWriter, utcDay, type TickWrite } from './writer';
