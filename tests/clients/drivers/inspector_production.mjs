// Drive one production with the official MCP Inspector CLIs (pinned), non-interactively. One JSON summary line on
// stdout; exit 0 when it completed with zero client-side validation errors.
//   --era modern : Inspector 2.12 `mcpdo` (session CLI + private daemon): connect --era modern --elicit form,
//                  tools/call start_workflow -> the server answers with a task (Tasks extension), task input_required
//                  surfaces as `elicitationPending`, answered with `elicitation/respond` until the final result, which
//                  the Inspector validates against start_workflow's outputSchema (issue 24 (a)).
//   --era modern-oneshot : Inspector 2.12 `inspector --cli --protocol-era modern`, auto_approve (the one-shot CLI
//                  cannot answer input_required: it parks the elicitation and never returns).
//   --era legacy : Inspector 2.12 one-shot CLI, --protocol-era legacy: start_workflow, then get_status / submit_decision,
//                  one CLI process per call (over stdio: one server process per call).
//   --era legacy015 : the same with Inspector 0.15.0's CLI (@modelcontextprotocol/inspector-cli).
// Target: --url http://127.0.0.1:PORT/mcp, or --cmd '["python","-m","server","serve","--sandbox","--data-dir","D"]'.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({ options: { era: { type: 'string', default: 'modern' }, url: { type: 'string' },
  cmd: { type: 'string' }, deadline: { type: 'string', default: '180' } } });
const DIR = process.env.MO_CLIENTS_DIR ?? new URL('../../../.clients', import.meta.url).pathname;
const NODE = process.execPath;
const INSPECTOR = `${DIR}/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js`;
const MCPDO = `${DIR}/node_modules/@modelcontextprotocol/inspector/clients/mcpdo/build/mcp-bin.js`;
const CLI015 = `${DIR}/node_modules/@modelcontextprotocol/inspector-cli/build/cli.js`;
const HOME = mkdtempSync(join(tmpdir(), 'mo-inspector-home-'));     // catalog, secrets, daemon state stay out of ~
const ENV = { ...process.env, HOME, MCP_INSPECTOR_SECRET_STORE: 'memory', MCP_ALLOW_DEFAULT_CONNECTION: '0' };
const log = (...x) => console.error('[inspector]', ...x);
const s = { client: a.era.startsWith('legacy015') ? 'inspector-0.15.0' : 'inspector-2.12.0', era: a.era,
            transport: a.url ? 'http' : 'stdio', workflow_id: null, status: null, elicitations: 0, submitted: 0,
            cli_calls: 0, validation_errors: [], errors: [], seconds: null };
const t0 = Date.now();
const target = a.url ? [a.url] : ['--', ...JSON.parse(a.cmd)];
const stdioEnv = a.url ? [] : ['-e', `PYTHONPATH=${process.env.PYTHONPATH ?? ''}`];

function run(argv, env = ENV, timeoutMs = 120000) {
  s.cli_calls++;
  return new Promise((res) => {
    const p = spawn(NODE, argv, { env, cwd: '/tmp', stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    p.stdout.on('data', (b) => (out += b)); p.stderr.on('data', (b) => (err += b));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('exit', (code) => { clearTimeout(timer); res({ code, out, err }); });
  });
}
const json = (r) => { try { return JSON.parse(r.out); } catch { return undefined; } };
const noteError = (r) => {
  const msg = (json({ out: r.err.split('\n').find((l) => l.startsWith('{"error"')) ?? '' })?.error?.message) ?? r.err.slice(-400);
  if (/must have required property|output schema|structured content/.test(msg)) s.validation_errors.push(msg); else s.errors.push(msg);
};
const choose = (schema) => schema.properties.choice.default ?? schema.properties.choice.enum[0];
const chooseDecision = (d) => d.context?.recommended ?? (d.options ?? []).find((o) => o !== 'more' && o !== 'reject') ?? d.options?.[0];
const ARGS = (extra = {}) => JSON.stringify({ project_id: 'demo-project', brief: 'a lighthouse keeper', options: { scenes: 1, characters: 1, ...extra } });

async function modernMcpdo() {
  // a private, token-gated daemon for this run only; stopped in finally
  const priv = await run([MCPDO, 'private']);
  const env = { ...ENV };
  for (const m of priv.out.matchAll(/export (\w+)='([^']*)'/g)) env[m[1]] = m[2];
  const conn = a.url ?? 'mo-stdio';
  try {
    const c = await run([MCPDO, '--format', 'json', 'connect', '--era', 'modern', '--elicit', 'form',
                         ...(a.url ? [a.url] : ['--transport', 'stdio', ...stdioEnv, ...target])], env);
    if (c.code !== 0) { noteError(c); return; }
    const name = json(c)?.name ?? conn;
    let r = await run([MCPDO, '--format', 'json', '--connection', name, 'tools/call', 'start_workflow', ARGS()], env);
    while (r.code === 0 && json(r)?.elicitationPending && (Date.now() - t0) / 1000 < Number(a.deadline)) {
      const p = json(r).elicitationPending;
      s.elicitations++;
      log('elicitation', p.message, '->', choose(p.requestedSchema));
      r = await run([MCPDO, '--format', 'json', '--connection', name, 'elicitation/respond', p.elicitationId,
                     JSON.stringify({ choice: choose(p.requestedSchema) })], env);
    }
    if (r.code !== 0) { noteError(r); return; }
    const result = json(r);
    const sc = result?.structuredContent ?? result?.result?.structuredContent;
    s.workflow_id = sc?.workflow_id ?? null;
    s.status = sc?.status ?? (sc?.outcome ? 'completed' : null);
  } finally {
    await run([MCPDO, 'daemon', 'stop'], env);
  }
}

async function oneShot(argvFor) {
  const started = await run(argvFor('start_workflow', ARGS(a.era === 'modern-oneshot' ? { auto_approve: true } : {})));
  if (started.code !== 0) { noteError(started); return; }
  const sc = json(started)?.result?.structuredContent ?? json(started)?.structuredContent;
  if (a.era === 'modern-oneshot') { s.workflow_id = sc?.workflow_id; s.status = sc?.status ?? (sc?.outcome ? 'completed' : null); return; }
  s.workflow_id = sc.workflow_id;
  while ((Date.now() - t0) / 1000 < Number(a.deadline)) {
    const r = await run(argvFor('get_status', JSON.stringify({ workflow_id: s.workflow_id, wait_seconds: 20,
                                                               until: ['completed', 'failed', 'cancelled', 'waiting_decision'] })));
    if (r.code !== 0) { noteError(r); return; }
    const st = json(r)?.result?.structuredContent ?? json(r)?.structuredContent;
    s.status = st.status;
    if (['completed', 'failed', 'cancelled'].includes(st.status)) return;
    for (const d of st.status === 'waiting_decision' ? st.pending_decisions : []) {
      const rr = await run(argvFor('submit_decision', JSON.stringify({ workflow_id: s.workflow_id, decision_id: d.id, choice: chooseDecision(d) })));
      if (rr.code !== 0) { noteError(rr); return; }
      s.submitted++;
    }
  }
}
const inspector212 = (era) => (tool, argsJson) => [INSPECTOR, '--cli', '--protocol-era', era, '--format', 'json', '--quiet',
  '--method', 'tools/call', '--tool-name', tool, '--tool-args-json', argsJson, ...stdioEnv, ...target];
// 0.15 has no --tool-args-json: --tool-arg k=v, JSON-parsed only for schema type object/array/number/boolean
const inspector015 = (tool, argsJson) => [CLI015, ...stdioEnv, '--cli', ...(a.url ? [a.url] : JSON.parse(a.cmd)),
  '--method', 'tools/call', '--tool-name', tool, '--tool-arg',
  ...Object.entries(JSON.parse(argsJson)).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)];

try {
  if (a.era === 'modern') await modernMcpdo();
  else if (a.era === 'modern-oneshot') await oneShot(inspector212('modern'));
  else if (a.era === 'legacy') await oneShot(inspector212('legacy'));
  else if (a.era === 'legacy015') await oneShot(inspector015);
  else throw new Error(`unknown --era ${a.era}`);
} catch (e) { s.errors.push(String(e?.message ?? e)); }
s.seconds = (Date.now() - t0) / 1000;
rmSync(HOME, { recursive: true, force: true });
console.log(JSON.stringify(s));
process.exit(s.status === 'completed' && !s.validation_errors.length && !s.errors.length ? 0 : 1);
