// node 20 has no fs.globSync (node 22 does); the conformance CLI imports it at load time but the
// server scenarios never call it. Everything else is node's own fs.
export * from "node:fs";
import fs from "node:fs";
export default fs;
export function globSync() {
  return [];
}
