/** One logger per module; room and participant ids ride along on every line. */
const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;
export type LogLevel = keyof typeof LEVELS;

let threshold: number = LEVELS[(process.env.LOG_LEVEL as LogLevel) ?? 'info'] ?? LEVELS.info;

export function setLogLevel(level: LogLevel): void {
  threshold = LEVELS[level] ?? LEVELS.info;
}

export interface Logger {
  debug(msg: string, extra?: Record<string, unknown>): void;
  info(msg: string, extra?: Record<string, unknown>): void;
  warn(msg: string, extra?: Record<string, unknown>): void;
  error(msg: string, extra?: Record<string, unknown>): void;
  child(fields: Record<string, string | number | undefined>): Logger;
}

export function createLogger(module: string, fields: Record<string, string | number | undefined> = {}): Logger {
  const prefix = () =>
    Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      // A value that is not one plain word (a person's name) is quoted and escaped, so that no
      // name can forge a field, reorder a line with bidi marks, or look like another line.
      .map(([k, v]) => `${k}=${typeof v === 'number' || /^[\w.:/@-]+$/.test(v!) ? v : JSON.stringify(v).replace(/\p{Cc}|\p{Cf}/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}`)
      .join(' ');
  const write = (level: LogLevel, msg: string, extra?: Record<string, unknown>) => {
    if (LEVELS[level] < threshold) return;
    const ctx = prefix();
    const tail = extra ? ' ' + JSON.stringify(extra) : '';
    const line = `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} [${module}]${ctx ? ' ' + ctx : ''} ${msg}${tail}`;
    (level === 'error' || level === 'warn' ? process.stderr : process.stdout).write(line + '\n');
  };
  return {
    debug: (m, e) => write('debug', m, e),
    info: (m, e) => write('info', m, e),
    warn: (m, e) => write('warn', m, e),
    error: (m, e) => write('error', m, e),
    child: (more) => createLogger(module, { ...fields, ...more }),
  };
}
