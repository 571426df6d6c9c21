// TS SDK 1.32.2 over WebSocket: a waiting get_status meets the first decision, answers it inline (elicitation/create),
// then reads get_status twice at once. One JSON line: {answered_decision_id, statuses:[{status,pending_decisions}x3]}.
//   node ts_sdk_inline_then_status.mjs --url ws://127.0.0.1:PORT/ws
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({ options: { url: { type: 'string' } } });
const DIR = process.env.MO_CLIENTS_DIR ?? new URL('../../../.clients', import.meta.url).pathname;
const SDK = `${DIR}/node_modules/@modelcontextprotocol/sdk/dist/esm`;
const { Client } = await import(`${SDK}/client/index.js`);
const { WebSocketClientTransport } = await import(`${SDK}/client/websocket.js`);
const { ElicitRequestSchema } = await import(`${SDK}/types.js`);

const client = new Client({ name: 'mo-inline-status', version: '1.0' }, { capabilities: { elicitation: { form: {} } } });
let asked = 0;
client.setRequestHandler(ElicitRequestSchema, async (req) => {
  asked++;
  const c = req.params.requestedSchema.properties.choice;
  return { action: 'accept', content: { choice: c.default ?? c.enum[0] } };
});
await client.connect(new WebSocketClientTransport(new URL(a.url)));
const started = await client.callTool({ name: 'start_workflow', arguments: { project_id: 'demo-project', brief: 'x', options: { scenes: 1, characters: 1 } } });
const wid = started.structuredContent.workflow_id;
const pick = (s) => ({ status: s.status, pending_decisions: (s.pending_decisions ?? []).map((d) => d.id) });
const statuses = [];
statuses.push(pick((await client.callTool({ name: 'get_status', arguments: { workflow_id: wid, wait_seconds: 30, until: ['completed', 'failed'] } }, undefined, { timeout: 60000 })).structuredContent));
statuses.push(pick((await client.callTool({ name: 'get_status', arguments: { workflow_id: wid } })).structuredContent));
statuses.push(pick((await client.callTool({ name: 'get_status', arguments: { workflow_id: wid } })).structuredContent));
const dec = JSON.parse((await client.readResource({ uri: `workflow://${wid}/decisions` })).contents[0].text);
await client.close();
console.log(JSON.stringify({ workflow_id: wid, asked, answered_decision_id: Object.keys(dec.answered ?? {})[0] ?? null, statuses }));
process.exit(asked === 1 ? 0 : 1);
