/**
 * Runs the checks in order and renders the report, for people or as JSON. Secrets never reach
 * the output: every string is scrubbed of the connection string, its key and anything that looks
 * like a key or SAS token.
 */
import { redactSecrets } from '../../common/log.js';
import { allChecks, type Check, type CheckResult, type CheckStatus, type DoctorContext } from './checks.js';
import type { DoctorEnv } from './env.js';

export interface CheckReport extends CheckResult {
  readonly id: string;
  readonly title: string;
}

export interface DoctorReport {
  /** No check failed: the gateway can work (warnings allowed). */
  readonly ok: boolean;
  readonly checks: readonly CheckReport[];
}

export interface RunDoctorOptions {
  readonly env: DoctorEnv;
  readonly configPath: string;
  readonly timeoutMs?: number;
  readonly checks?: readonly Check[];
}

function scrubber(secrets: readonly string[]): (text: string) => string {
  const live = secrets.filter((s) => s.length >= 8).sort((a, b) => b.length - a.length);
  return (text) => {
    let out = text;
    for (const s of live) out = out.split(s).join('[redacted]');
    return redactSecrets(out);
  };
}

function scrubDeep(value: unknown, scrub: (s: string) => string): unknown {
  if (typeof value === 'string') return scrub(value);
  if (Array.isArray(value)) return value.map((v) => scrubDeep(v, scrub));
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, scrubDeep(v, scrub)]));
  return value;
}

export async function runDoctor(opts: RunDoctorOptions): Promise<DoctorReport> {
  const ctx: DoctorContext = { env: opts.env, configPath: opts.configPath, timeoutMs: opts.timeoutMs ?? 10_000, results: new Map() };
  const checks: CheckReport[] = [];
  for (const check of opts.checks ?? allChecks) {
    let result: CheckResult;
    try {
      result = await check.run(ctx);
    } catch (e) {
      // A bug in a check must not hide the others' answers.
      result = { status: 'fail', summary: `the check itself failed: ${e instanceof Error ? e.message : String(e)}`, fix: 'report this with the output of fieldlink doctor --json' };
    }
    ctx.results.set(check.id, result);
    checks.push({ id: check.id, title: check.title, ...result });
  }
  const cs = ctx.config?.connectionString;
  const key = cs === undefined ? undefined : /(?:^|;)SharedAccessKey=([^;]+)/.exec(cs)?.[1];
  const scrub = scrubber([cs, key].filter((s): s is string => s !== undefined));
  const clean = checks.map((c) => scrubDeep(c, scrub) as CheckReport);
  return { ok: clean.every((c) => c.status !== 'fail'), checks: clean };
}

const MARK: Record<CheckStatus, string> = { ok: '✓', warn: '!', fail: '✗', skip: '-' };

/** One line per check, an indented fix when not ok, and the verdict. */
export function formatReport(report: DoctorReport): string {
  const lines: string[] = [];
  for (const c of report.checks) {
    lines.push(`${MARK[c.status]} ${c.title}: ${c.summary}`);
    if (c.status !== 'ok' && c.fix !== undefined) lines.push(`    fix: ${c.fix}`);
  }
  const problems = report.checks.filter((c) => c.status === 'fail').length;
  const warnings = report.checks.filter((c) => c.status === 'warn').length;
  lines.push(
    problems === 0
      ? `gateway can work${warnings > 0 ? ` (${warnings} warning${warnings === 1 ? '' : 's'})` : ''}`
      : `gateway cannot work: ${problems} problem${problems === 1 ? '' : 's'}`,
  );
  return `${lines.join('\n')}\n`;
}

export function reportJson(report: DoctorReport): string {
  return `${JSON.stringify({ ok: report.ok, checks: report.checks }, null, 2)}\n`;
}
