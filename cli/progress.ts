import { SingleBar, Presets } from 'cli-progress';
import type { ProgressFn } from '../core/backup';

export interface Progress {
  update: ProgressFn;
  stop(): void;
}

/**
 * A progress bar on a terminal; on anything else (systemd, cron, a pipe) one plain line per
 * stage, so logs stay readable. Everything goes to stderr: stdout carries only results.
 */
export function progressReporter(title: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (stream.isTTY) {
    const bar = new SingleBar({ format: `${title} [{bar}] {percentage}% | {value}/{total} | {label}`, stream, hideCursor: true, clearOnComplete: false }, Presets.shades_classic);
    let startedBar = false;
    return {
      update(done, total, label) {
        if (!startedBar) {
          bar.start(total, done, { label });
          startedBar = true;
        }
        bar.setTotal(total);
        bar.update(done, { label: label.length > 40 ? `…${label.slice(-39)}` : label });
      },
      stop: () => startedBar && bar.stop(),
    };
  }
  let lastPercent = -1;
  return {
    update(done, total, label) {
      // One line per tenth of the work, not one per file.
      const percent = total ? Math.floor((done * 10) / total) * 10 : 100;
      if (percent === lastPercent) return;
      lastPercent = percent;
      stream.write(`${title}: ${percent}% (${done}/${total}) ${label}\n`);
    },
    stop() {},
  };
}
