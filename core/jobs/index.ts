export { JobQueue, INTERRUPTED_MESSAGE, type JobControl, type JobHandler, type JobQueueOptions, type JobView } from './job-queue';
