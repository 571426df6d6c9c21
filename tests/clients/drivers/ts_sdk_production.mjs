// Drive one production from start to completed with the TypeScript SDK client (@modelcontextprotocol/sdk, pinned).
// Prints ONE JSON line (the summary) on stdout; diagnostics on stderr. Exit 0 when the production completed with
// zero client-side validation errors, 1 otherwise. Used by test_real_clients.py; runnable by hand:
//   node ts_sdk_production.mjs --transport http --url http://127.0.0.1:PORT/mcp [--tasks v1] [--subscribe]
//   node ts_sdk_production.mjs --transport ws --url ws://127.0.0.1:PORT/ws
//   node ts_sdk_production.mjs --transport stdio --cmd '["python","-m","server","serve","--sandbox","--data-dir","D"]'
// MO_CLIENTS_DIR points at the folder holding node_modules (default: two levels up from this file's .clients).
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({ options: {
  transport: { type: 'string', default: 'http' }, url: { type: 'string' }, cmd: { type: 'string' },
  tasks: { type: 'string', default: 'none' },          // none | v1 (2025-11-25 experimental: callToolStream + params.task)
  subscribe: { type: 'boolean', default: false },      // resources/subscribe workflow://{id}/state and count updates
  scenes: { type: 'string', default: '1' }, deadline: { type: 'string', default: '120' } } });
const DIR = process.env.MO_CLIENTS_DIR ?? new URL('../../../.clients', import.meta.url).pathname;
const SDK = `${DIR}/node_modules/@modelcontextprotocol/sdk/dist/esm`;
const { Client } = await import(`${SDK}/client/index.js`);
const T = await import(`${SDK}/types.js`);

const s = { client: 'ts-sdk-1.32.2', transport: a.transport, tasks: a.tasks, workflow_id: null, status: null,
            progress: 0, logs: 0, elicitations: 0, submitted: 0, resource_updates: 0, validation_errors: [],
            errors: [], task_messages: [], workflows_before: null, workflows_after: null, seconds: null };
const t0 = Date.now();
const log = (...x) => console.error('[ts-sdk]', ...x);
const choose = (schemaOrDecision) => {
  const p = schemaOrDecision.properties?.choice;
  if (p) return p.default ?? p.enum?.[0];
  const d = schemaOrDecision;
  return d.context?.recommended ?? (d.options ?? []).find((o) => o !== 'more' && o !== 'reject') ?? d.options?.[0];
};

async function transport() {
  if (a.transport === 'http') {
    const { StreamableHTTPClientTransport } = await import(`${SDK}/client/streamableHttp.js`);
    return new StreamableHTTPClientTransport(new URL(a.url));
  }
  if (a.transport === 'ws') {
    const { WebSocketClientTransport } = await import(`${SDK}/client/websocket.js`);
    return new WebSocketClientTransport(new URL(a.url));
  }
  const { StdioClientTransport } = await import(`${SDK}/client/stdio.js`);
  const [command, ...args] = JSON.parse(a.cmd);
  return new StdioClientTransport({ command, args, env: process.env, stderr: 'ignore' });
}

const client = new Client({ name: 'mo-real-client-test', version: '1.0' }, { capabilities: {
  elicitation: { form: {} },
  ...(a.tasks === 'v1' ? { tasks: { cancel: {}, list: {}, requests: { elicitation: { create: {} } } } } : {}) } });
client.setRequestHandler(T.ElicitRequestSchema, async (req) => {
  s.elicitations++;
  const relatedTask = req.params._meta?.[T.RELATED_TASK_META_KEY]?.taskId;
  const choice = choose(req.params.requestedSchema);
  log('elicitation', JSON.stringify(req.params.message), '->', choice, relatedTask ? `(related-task ${relatedTask})` : '');
  return { action: 'accept', content: { choice } };
});
client.setNotificationHandler(T.LoggingMessageNotificationSchema, () => { s.logs++; });
client.setNotificationHandler(T.ResourceUpdatedNotificationSchema, () => { s.resource_updates++; });
const onprogress = () => { s.progress++; };
const call = async (name, args, timeout = 60000) => {
  try { return await client.callTool({ name, arguments: args }, undefined, { onprogress, resetTimeoutOnProgress: true, timeout }); }
  catch (e) { if (/output schema|structured content/i.test(e.message)) s.validation_errors.push(`${name}: ${e.message}`); throw e; }
};
const countWorkflows = async () => (await call('list_workflows', { limit: 100 })).structuredContent.workflows?.length;

try {
  await client.connect(await transport());
  await client.listTools();                                   // caches outputSchema validators
  s.workflows_before = await countWorkflows();
  const args = { project_id: 'demo-project', brief: 'a lighthouse keeper', options: { scenes: Number(a.scenes), characters: 1 } };
  if (a.tasks === 'v1') {
    // 2025-11-25 experimental tasks: params.task, tasks/get polling, tasks/result (blocking) on input_required/completed.
    const stream = client.experimental.tasks.callToolStream({ name: 'start_workflow', arguments: args }, undefined,
      { task: { ttl: 600000 }, onprogress, resetTimeoutOnProgress: true, timeout: Number(a.deadline) * 1000 });
    for await (const m of stream) {
      s.task_messages.push(m.type === 'error' ? `error: ${m.error.message.slice(0, 300)}` : `${m.type}:${m.task?.status ?? ''}`);
      if (m.type === 'taskCreated') s.workflow_id = m.task.taskId;
      if (m.type === 'result') s.status = m.result.structuredContent?.status ?? 'completed';
      if (m.type === 'error') { if (/output schema|structured content/i.test(m.error.message)) s.validation_errors.push(m.error.message); s.errors.push(m.error.message); }
    }
    if (s.workflow_id) s.status = (await call('get_status', { workflow_id: s.workflow_id })).structuredContent.status;
  } else {
    const started = (await call('start_workflow', args)).structuredContent;
    s.workflow_id = started.workflow_id;
    if (a.subscribe) await client.subscribeResource({ uri: `workflow://${s.workflow_id}/state` });
    while ((Date.now() - t0) / 1000 < Number(a.deadline)) {
      const st = (await call('get_status', { workflow_id: s.workflow_id, wait_seconds: 20,
                                            until: ['completed', 'failed', 'cancelled', 'waiting_decision'] }, 90000)).structuredContent;
      s.status = st.status;
      if (['completed', 'failed', 'cancelled'].includes(st.status)) break;
      for (const d of st.status === 'waiting_decision' ? st.pending_decisions : []) {
        const choice = choose(d);
        log('submit_decision', d.question ?? d.id, '->', choice);
        await call('submit_decision', { workflow_id: s.workflow_id, decision_id: d.id ?? d.decision_id, choice });
        s.submitted++;
      }
    }
    if (a.subscribe) await new Promise((r) => setTimeout(r, 500));
  }
  s.workflows_after = await countWorkflows();
} catch (e) {
  s.errors.push(String(e?.message ?? e).slice(0, 500));
} finally {
  s.seconds = (Date.now() - t0) / 1000;
  await client.close().catch(() => {});
}
console.log(JSON.stringify(s));
process.exit(s.status === 'completed' && s.validation_errors.length === 0 && s.errors.length === 0 ? 0 : 1);
